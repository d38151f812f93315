// The gateway's desired state: which namespace's pods leave with which egress
// address. Written by the controller (or by hand), read by the gateway agent.
// Wire format: JSON, documented in docs/desired-state.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress {

// A pod's block of source ports on one of its namespace's egress addresses.
struct PodPortBlock {
  IpAddress egress, pod;
  uint16_t first = 0, last = 0;
  bool operator==(const PodPortBlock&) const = default;
};

struct NamespaceEgress {
  std::string name;
  // At most one egress address per family. Pods of a family with no egress
  // address are fail-closed: their traffic is dropped and counted.
  std::optional<IpAddress> egress_v4;
  std::optional<IpAddress> egress_v6;
  std::vector<IpAddress> pod_ips;
  // The node hosting its address of each family, wherever it is ("" if no
  // node hosts one). Pods on other nodes are steered there.
  std::string gateway_v4;
  std::string gateway_v6;
  // Attribution by port: its pool gives each pod a block of source ports.
  // Then a pod with no block on the address of its family is fail-closed
  // (never translated to ports that would name another pod).
  bool port_blocks_required = false;
  std::vector<PodPortBlock> port_blocks;
  // The block of `pod` on `egress`, if any.
  const PodPortBlock* blockOf(const IpAddress& pod, const IpAddress& egress) const {
    for (const auto& b : port_blocks)
      if (b.pod == pod && b.egress == egress) return &b;
    return nullptr;
  }

  std::optional<IpAddress> egressFor(Family f) const {
    return f == Family::V4 ? egress_v4 : egress_v6;
  }
  const std::string& gatewayFor(Family f) const {
    return f == Family::V4 ? gateway_v4 : gateway_v6;
  }
  bool operator==(const NamespaceEgress&) const = default;
};

// A node of the cluster: its underlay addresses (what steering sends to and
// what a tunnel endpoint accepts) and the pods of listed namespaces on it.
struct NodeEntry {
  std::string name;
  std::optional<IpAddress> ipv4;
  std::optional<IpAddress> ipv6;
  std::vector<IpAddress> pod_ips;
  bool operator==(const NodeEntry&) const = default;
};

// Failover (docs/architecture.md "Failover"): an egress address of a listed
// namespace, the node that owns it as the store last said, its designated
// standby and the ownership epoch. The agent overlays fresher knowledge
// (a takeover it was granted or was told of by a higher epoch).
struct AddressRole {
  IpAddress ip;
  std::string ns;
  std::string owner;
  std::string standby;  // "" none
  uint64_t epoch = 0;
  bool operator==(const AddressRole&) const = default;
};

struct DesiredState {
  std::string gateway;      // node name this state is for
  uint64_t generation = 0;  // monotonically increasing, set by the writer
  std::vector<NamespaceEgress> namespaces;
  // Pod addresses that cannot be attributed to exactly one namespace (claimed
  // by pods of two): dropped and counted, never let out unmapped.
  std::vector<IpAddress> blocked;
  // The cluster's nodes (empty: no steering information; every pod of a
  // namespace hosted elsewhere is fail-closed here, as before steering).
  std::vector<NodeEntry> nodes;
  // With failover: every egress address of a listed namespace (any node).
  std::vector<AddressRole> addresses;
  // Cluster mode with failover: the controller leader's lease server
  // ("IPv4:port", from the Endpoints it publishes; "" none known). Not in
  // the file format: standalone gateways are given --lease-server.
  std::string lease_server;
  bool operator==(const DesiredState&) const = default;

  // This state's own node entry (named by `gateway`), or nullptr.
  const NodeEntry* self() const;
  const NodeEntry* node(std::string_view name) const;
};

inline constexpr std::string_view kDesiredStateKind = "GatewayDesiredState";
inline constexpr std::string_view kApiVersion = "nsegress.io/v1alpha1";

// Strict parse of hostile input: bounded (size, depth, values) before the
// tree is built, duplicate keys refused. On error the message names the
// offending field, e.g. `namespaces[1].podIPs[0]: "10.0.0.300" is not an IP
// address`.
inline constexpr size_t kMaxDesiredStateBytes = 64u << 20;
Result<DesiredState> parseDesiredState(std::string_view json);
std::string serializeDesiredState(const DesiredState& s);

// A pod address listed by more than one namespace (an address reused while
// the old pod's object still exists, or a forged Pod object) belongs to none
// of them: it is removed from all and added to `blocked`, so it is dropped —
// one tenant's egress address is never given to another tenant's pod, and
// a forged claim never lets the real pod out unmapped. Repeats within one
// namespace are merged. Returns the ambiguous addresses, sorted.
std::vector<IpAddress> dropAmbiguousPodIps(DesiredState& s);

// Kubernetes object-name rules: RFC 1123 label (namespace names) and
// subdomain (node names).
bool isDnsLabel(std::string_view s);
bool isDnsSubdomain(std::string_view s);

}  // namespace nsegress
