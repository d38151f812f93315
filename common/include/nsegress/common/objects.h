// The objects nsegress reads — the same typed values whether they come from
// standalone YAML manifests or the Kubernetes API (decode.h builds them from
// either) — and the ledger the controller keeps. Pure value types, shared by
// the controller and the gateway.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/common/kubernetes.h"
#include "nsegress/common/result.h"

namespace nsegress {

using Labels = std::map<std::string, std::string>;
using Seconds = int64_t;  // Unix time, seconds (the ledger's clock)

// A Kubernetes label selector (matchLabels + matchExpressions).
struct Selector {
  struct Requirement {
    std::string key;
    enum class Op { kIn, kNotIn, kExists, kDoesNotExist } op;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements;  // all must hold; empty selects everything
  bool matches(const Labels& labels) const;
};

struct AddressRange {
  IpAddress first, last;  // inclusive, same family
  bool contains(const IpAddress& a) const {
    return a.family() == first.family() && first <= a && a <= last;
  }
};

struct Pool {
  std::string name;
  std::vector<AddressRange> ranges;  // in spec order
  std::vector<AddressRange> excluded;
  Selector namespace_selector;
  Selector node_selector;
  Seconds quarantine = 7 * 24 * 3600;
  // The decommission handshake: a released address waits in
  // PendingFirewallCleanup until the firewall side acknowledges it.
  bool acknowledge_removal = false;
  // Onboarding: a new address is in the feeds this long before pods use it.
  Seconds onboarding = 0;
  static constexpr Seconds kMaxOnboarding = 7 * 24 * 3600;
  // Attribution by port (RFC 7422 deterministic NAT): each pod gets a fixed
  // block of this many source ports on its namespace's address, from
  // kFirstBlockPort up; 0: off (all pods share the address's ports).
  uint32_t port_block_size = 0;
  static constexpr uint32_t kFirstBlockPort = 1024;
  static constexpr uint32_t kMinPortBlock = 64;
  static constexpr uint32_t kMaxPortBlock = 32256;  // two blocks at least
  uint32_t portBlocks() const {
    return port_block_size ? (65536 - kFirstBlockPort) / port_block_size : 0;
  }
  std::string source;  // file it came from
  std::optional<std::string>
      invalid;  // why the spec is unusable (kept, so namespaces see the reason)

  bool contains(const IpAddress& a) const;
  bool excludes(const IpAddress& a) const;
  // Usable addresses: ranges minus exclusions, overlaps counted once,
  // saturated at 2^64 - 1 (an IPv6 /64).
  uint64_t size() const;
  // The lowest address of the pool that is not excluded and not `taken`;
  // `next_taken(a)` gives the lowest taken address above `a` (so runs of
  // taken addresses are skipped without testing each).
  std::optional<IpAddress> lowestFree(
      const std::function<bool(const IpAddress&)>& taken,
      const std::function<std::optional<IpAddress>(const IpAddress&)>& next_taken) const;
};

struct Namespace {
  std::string name;
  Labels labels;
  std::map<std::string, std::string> annotations;
  // From the API only (manifests leave them empty): a namespace being
  // deleted (metadata.deletionTimestamp), its finalizers and the version
  // read, for conditional write-backs.
  bool deleting = false;
  std::vector<std::string> finalizers;
  std::string resource_version;
  std::string uid;  // metadata.uid (Events name the object they regard by it)

  // Asks for an egress address (nsegress.io/pool or nsegress.io/ip).
  bool requestsEgress() const {
    return annotations.count(kPoolAnnotation) || annotations.count(kIpAnnotation);
  }
  bool operator==(const Namespace&) const = default;
};

struct Pod {
  std::string ns, name, node;
  // The pod's own addresses only (podOwnsItsAddresses): empty for a
  // host-network or finished pod.
  std::vector<IpAddress> ips;
  bool operator==(const Pod&) const = default;
};

struct Node {
  std::string name;
  Labels labels;
  bool ready = true;
  // The node's underlay addresses (status.addresses, type InternalIP; the
  // first of each family): where steered traffic to this node is sent.
  std::optional<IpAddress> ipv4;
  std::optional<IpAddress> ipv6;
  // Drained by an operator (nsegressctl drain, or the label
  // nsegress.io/drain=true): no new placement; its addresses are handed
  // over (planned, conntrack carried) — see isDrained().
  bool drained = false;
};

inline constexpr const char* kDrainLabel = "nsegress.io/drain";
inline bool isDrained(const Node& n) {
  auto it = n.labels.find(kDrainLabel);
  return n.drained || (it != n.labels.end() && it->second == "true");
}

// Why addresses of `r` can never be egress addresses (loopback, multicast,
// link-local, unspecified, reserved), or nullopt.
std::optional<std::string> unusableEgress(const AddressRange& r);

// Pools whose addresses overlap are both marked invalid (with the reason):
// an address must belong to exactly one pool.
void markOverlappingPools(std::map<std::string, Pool>& pools);

// Everything the controller knows about the world at one moment.
// Failover: what the lease book says of an address (its owner decides where
// the address is placed; docs/architecture.md "Failover").
struct LeaseView {
  std::string owner;
  uint64_t epoch = 0;
};

// Cluster mode's failover store: an address's owner and epoch, kept in a
// coordination.k8s.io Lease named egressLeaseName(ip) in the controller's
// namespace (holderIdentity: the owner; leaseTransitions: the epoch;
// annotation nsegress.io/address: the address). Written by the leader's
// lease book only when an address changes owner, conditional on `version`
// (its resourceVersion): etcd arbitrates, one writer wins.
struct EgressLease {
  IpAddress ip;
  std::string owner;
  uint64_t epoch = 0;
  std::string version;
  bool operator==(const EgressLease&) const = default;
};
// "nsegress-egress-203-0-113-10", "nsegress-egress-fd00--1" (':' → '-').
std::string egressLeaseName(const IpAddress& ip);
inline constexpr const char* kEgressLeaseLabel = "nsegress.io/egress-lease";
inline constexpr const char* kEgressLeaseAddress = "nsegress.io/address";

struct World {
  std::map<std::string, Pool> pools;
  std::map<std::string, Namespace> namespaces;
  std::vector<Pod> pods;
  std::map<std::string, Node> nodes;
  bool failover = false;                  // gateway states carry address roles
  std::map<IpAddress, LeaseView> leases;  // the lease book's owners
};

// ---- ledger -------------------------------------------------------------------

// PendingFirewallCleanup: released in a pool with acknowledgeRemoval, out of
// the feeds and given to nobody (its holder may reclaim it) until the
// firewall side acknowledges its removal; then Quarantined.
enum class AddressState { kAssigned, kPendingFirewallCleanup, kQuarantined, kFree };
std::string toString(AddressState s);
std::optional<AddressState> addressStateFrom(const std::string& s);
// The latest time nsegress reads or writes: 9999-12-31T23:59:59Z.
inline constexpr Seconds kMaxTime = 253402300799;
// RFC 3339 UTC ("2026-11-25T12:00:00Z"); "" for 0 and anything outside
// 1970..9999.
std::string formatTime(Seconds t);
// Parses an RFC 3339 UTC time ("2026-11-25T12:00:00Z", fractions of a
// second ignored); nullopt for anything else.
std::optional<Seconds> parseRfc3339(std::string_view s);

struct AddressRecord {
  IpAddress ip;
  std::string pool;
  AddressState state = AddressState::kFree;
  std::string ns;           // Assigned: holder; Quarantined/Free: previous holder (tombstone)
  std::string node;         // gateway node hosting it (Assigned)
  Seconds assigned_at = 0;  // when the current/last holder got it
  Seconds released_at = 0;  // when it was released (pending cleanup or quarantine)
  Seconds quarantine_until = 0;
  // Assigned in a pool with onboarding: pods use it from this time (it is in
  // the feeds from assigned_at). 0: at once.
  Seconds usable_at = 0;
  bool usable(Seconds now) const { return usable_at <= now; }
  // Opaque storage version (the Kubernetes resourceVersion) of the stored
  // object this record was read from; writes are conditional on it. Empty
  // for SQLite and for addresses never stored.
  std::string version;
  bool operator==(const AddressRecord&) const = default;
};

// A pod's block of source ports on its namespace's egress address (RFC 7422
// deterministic NAT): every connection the pod opens leaves from a port in
// [first, last], so address and port name the pod. Held from `from` until
// `to` (0 while held); the ledger keeps every block, so "who was behind
// ADDRESS:PORT at T" is answered after the pod is gone.
struct PortBlock {
  IpAddress egress;
  uint16_t first = 0, last = 0;
  std::string ns, pod;
  IpAddress pod_ip;
  Seconds from = 0, to = 0;
  bool held() const { return to == 0; }
  bool operator==(const PortBlock&) const = default;
};

// One append-only audit entry (in cluster mode also written as a Kubernetes Event).
struct AuditEvent {
  Seconds at = 0;
  std::string kind;  // Assigned, Released, Reclaimed, QuarantineExpired, Moved, Refused, Conflict
  std::string ns;
  std::string ip;
  std::string pool;
  std::string node;
  std::string message;  // for a person
  bool operator==(const AuditEvent&) const = default;
};

// A pod from the fields its status reports, by the rules manifests and the
// API share: only addresses that are the pod's own (podOwnsItsAddresses),
// each one validated; the error names the field, e.g.
// `status.podIPs[1]: "x" is not an IP address`.
Result<Pod> podFrom(std::string ns, std::string name, std::string node, std::string_view phase,
                    bool host_network, const std::vector<std::string>& ips);

// Parses "168h", "7d", "30m", "90s", "1h30m" (Kubernetes/Go style, plus days).
std::optional<Seconds> parseDuration(const std::string& s);
// "a.b.c.d/n", "a.b.c.d-e.f.g.h" or a single address.
std::optional<AddressRange> parseAddressRange(const std::string& s);

}  // namespace nsegress
