// The node's data path: a list of providers (provider.h) run as one
// reconcile. Level-based: each provider plans from its model of the kernel
// (read in full on the first run, on `full`, and after any failure), so a
// failed or interrupted run is finished by the next one.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nsegress/gateway/address_provider.h"
#include "nsegress/gateway/nft_session.h"
#include "nsegress/gateway/snat_provider.h"
#include "nsegress/gateway/steer_provider.h"
#include "nsegress/gateway/table_provider.h"

namespace nsegress::gateway {

struct NamespaceCounters {
  uint64_t tx_packets = 0, tx_bytes = 0;
  uint64_t drop_packets = 0, drop_bytes = 0;
};
std::map<std::string, NamespaceCounters> countersByNamespace(const ObservedNft& nft);

struct ReconcileOutcome {
  ExecStats stats;
  // The table's own drop counters (blocked, spoofed, inbound: packets), when
  // the kernel was read.
  std::map<std::string, uint64_t> drops;
  // Whether the kernel was read in full this time; then `counters` holds
  // the nft counters as read (namespace -> counters).
  bool observed_kernel = false;
  std::map<std::string, NamespaceCounters> counters;
};

// Runs providers: observe (when needed), install in order, retire in
// reverse order. Stops at the first failure and drops every model.
class Dataplane {
 public:
  void add(Provider& p) { providers_.push_back(&p); }
  Result<ReconcileOutcome> reconcile(const DesiredState& desired, bool full = true);
  const std::vector<Provider*>& providers() const { return providers_; }

 private:
  std::vector<Provider*> providers_;
};

// The kernel ports a node's data path uses.
struct Ports {
  NftKernel& nft;
  AddressKernel& addresses;
  Announcer& announcer;
  ConntrackKernel& conntrack;
  RouteKernel* routes = nullptr;  // with steering
};

// The node's providers, wired: table, addresses, [steering,] snat.
class NodeDataplane {
 public:
  // `steer`: this node steers its pods of namespaces hosted elsewhere
  // (needs Ports::routes).
  explicit NodeDataplane(Ports p, std::optional<SteerConfig> steer = std::nullopt);
  Result<ReconcileOutcome> reconcile(const DesiredState& desired, bool full = true);
  Dataplane& dataplane() { return dp_; }
  const NftSession& nft() const { return session_; }

 private:
  NftSession session_;
  TableProvider table_;
  AddressProvider addresses_;
  std::optional<SteerConfig> steer_cfg_;
  std::optional<SteerProvider> steer_;
  SnatProvider snat_;
  Dataplane dp_;
};

}  // namespace nsegress::gateway
