// Provider `snat`: per pod, its namespace's egress address (snat4/6), its
// namespace's tx counter (tx4/6) or, with no address live, the fail-closed
// drop counter (pending4/6); the counters; and the conntrack flows of
// mappings that changed. One transaction switches everything at once (a pod
// whose mapping changes is deleted and re-added in it, so no packet sees it
// unmapped); the flush debts it creates are recorded in the kernel by that
// same transaction and cleared only after the flush, so a crash in between is
// finished by the next reconcile.
#pragma once

#include <optional>
#include <set>

#include "nsegress/gateway/nft_session.h"
#include "nsegress/gateway/ports/conntrack.h"
#include "nsegress/gateway/steer_provider.h"

namespace nsegress::gateway {

struct SnatPlan {
  std::vector<NftOp> main;            // install: the atomic switch
  std::vector<ConntrackFlush> flush;  // retire: flows of mappings removed or changed
  std::vector<NftOp> forget;          // retire: flush records now settled
  bool empty() const { return main.empty() && flush.empty() && forget.empty(); }
  size_t size() const { return main.size() + flush.size() + forget.size(); }
};

// Pure. Flows of an address that leaves the node (`leaving`) are flushed
// whole by the address provider, so they get no per-pod flush here. Pods in
// `steered` (steer_provider.h) are neither mapped nor held here: steering
// sends them to their gateway.
SnatPlan planSnat(const DesiredState& d, const ObservedNft& have,
                  const std::set<IpAddress>& leaving = {}, const std::set<IpAddress>& steered = {});

class SnatProvider final : public Provider {
 public:
  // `steer`: the steering configuration when this node steers (its pods
  // of namespaces hosted elsewhere are then not held here).
  SnatProvider(NftSession& s, ConntrackKernel& ct, const SteerConfig* steer = nullptr)
      : s_(s), ct_(ct), steer_(steer) {}
  std::string_view name() const override { return "snat"; }
  Status observe() override { return s_.hasModel() ? okStatus() : s_.observe(); }
  bool hasModel() const override { return s_.hasModel(); }
  void dropModel() override { s_.dropModel(); }
  Status install(const DesiredState& desired, ExecStats& stats) override;
  Status retire(const DesiredState& desired, ExecStats& stats) override;

 private:
  NftSession& s_;
  ConntrackKernel& ct_;
  const SteerConfig* steer_;
  // The flushes and forgets planned with the switch, for retire(): planned
  // once per reconcile (a plan is O(pods)).
  std::optional<SnatPlan> planned_;
};

}  // namespace nsegress::gateway
