// The allocator: world + ledger + clock -> ledger changes, per-namespace
// status, audit events. Pure and deterministic: namespaces are processed in
// name order and a pool request gets the lowest free address.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/failover_roles.h"
#include "nsegress/common/objects.h"

namespace nsegress::controller {

enum class Phase { kAssigned, kPending, kRefused };
std::string toString(Phase p);

struct NamespaceStatus {
  std::string ns;
  Phase phase = Phase::kPending;
  std::optional<IpAddress> ip;
  std::string pool;
  std::string node;
  std::string request;  // what was asked, e.g. "pool dmz" or "ip 203.0.113.7"
  std::string reason;   // why Pending/Refused, or a warning while Assigned
  bool operator==(const NamespaceStatus&) const = default;
};

using Ledger = std::map<IpAddress, AddressRecord>;

struct Allocation {
  Ledger ledger;                                    // the complete new ledger
  std::vector<AddressRecord> changed;               // records that differ from the input
  std::vector<AuditEvent> events;                   // what happened, in order
  std::map<std::string, NamespaceStatus> statuses;  // every annotated namespace
};

// `previous` statuses suppress repeated Refused/Pending/Conflict events: an
// event is emitted when a namespace's status changes, not on every reconcile.
// `acknowledged`: addresses whose removal the firewall side acknowledged
// (the decommission handshake): PendingFirewallCleanup ones enter
// quarantine now.
Allocation allocate(const World& world, const Ledger& ledger, Seconds now,
                    const std::map<std::string, NamespaceStatus>& previous = {},
                    const std::map<IpAddress, std::string>& acknowledged = {});

// Per gateway node (a node a valid pool may place addresses on, or one the
// ledger places an address on): its desired state by the one set of rules
// both modes share (common/gateway_view.h).
// `blocks`: the port blocks held (attribution by port), if any.
struct BlockBook;
std::map<std::string, DesiredState> gatewayStates(const World& world, const Allocation& a,
                                                  Seconds now, const BlockBook* blocks = nullptr);
// The earliest onboarding end after `now` (when gateway states change next
// without any other event), if any.
std::optional<Seconds> nextOnboardingEnd(const Ledger& ledger, Seconds now);

// Failover roles, planned handovers: common/failover_roles.h.

// Per pool: usable addresses and how many of them the ledger holds. `free`
// is what a new namespace could still get. An invalid pool reports size 0
// and why.
struct PoolUsage {
  uint64_t size = 0, assigned = 0, pending_cleanup = 0, quarantined = 0, free = 0;
  std::string invalid;
  bool operator==(const PoolUsage&) const = default;
};
std::map<std::string, PoolUsage> poolUsage(const std::map<std::string, Pool>& pools,
                                           const Ledger& ledger);

// Who held `ip` at time `at`, from the audit history (NAT attribution).
std::optional<std::string> whoHad(const std::vector<AuditEvent>& history, const IpAddress& ip,
                                  Seconds at);

}  // namespace nsegress::controller
