// One reconcile: observe the kernel, plan, execute. Level-based: it always
// starts from what the kernel holds now, so a failed or interrupted run is
// finished by the next one.
#pragma once

#include <map>
#include <optional>
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
  // Counters as observed before the changes (namespace -> counters); only
  // filled when the kernel was read (observed_kernel).
  std::map<std::string, NamespaceCounters> counters;
  bool observed_kernel = false;
};

// Keeps a model of the kernel: after a committed plan the model is updated
// with the same op semantics instead of dumping the kernel again, so a change
// costs O(change), not O(table). The kernel is read in full on the first
// reconcile, after any failure, and when `full` is requested (the agent's
// periodic resync, which repairs drift made by others).
class Reconciler {
 public:
  explicit Reconciler(Kernel k) : k_(k) {}
  Result<ReconcileOutcome> reconcile(const DesiredState& desired, bool full = true);
  // Read-only: the kernel as it is (for metrics and `--status`).
  Result<Observed> observe();
  bool hasModel() const { return model_.has_value(); }

 private:
  Kernel k_;
  std::optional<Observed> model_;
};

std::map<std::string, NamespaceCounters> countersByNamespace(const ObservedNft& nft);

}  // namespace nsegress::gateway
