// One reconcile: observe the kernel, plan, execute. Level-based: it always
// starts from what the kernel holds now, so a failed or interrupted run is
// finished by the next one.
#pragma once

#include <map>
#include <string>

#include "nsegress/common/desired_state.h"
#include "nsegress/gateway/executor.h"
#include "nsegress/gateway/planner.h"

namespace nsegress::gateway {

struct NamespaceCounters {
  uint64_t tx_packets = 0, tx_bytes = 0;
  uint64_t drop_packets = 0, drop_bytes = 0;
};

struct ReconcileOutcome {
  size_t planned_ops = 0;
  ExecStats stats;
  // Counters as observed before the changes (namespace -> counters).
  std::map<std::string, NamespaceCounters> counters;
};

class Reconciler {
 public:
  explicit Reconciler(Kernel k) : k_(k) {}
  Result<ReconcileOutcome> reconcile(const DesiredState& desired);
  // Read-only: the kernel as it is (for metrics and `--status`).
  Result<Observed> observe();

 private:
  Kernel k_;
};

std::map<std::string, NamespaceCounters> countersByNamespace(const ObservedNft& nft);

}  // namespace nsegress::gateway
