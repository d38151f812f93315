#include "nsegress/gateway/table_provider.h"

namespace nsegress::gateway {

namespace {
NftOp tableOp(NftOp::Kind k) {
  return NftOp{k, "", {}, {}, {}};
}
}  // namespace

std::vector<NftOp> planTable(const ObservedNft& have) {
  using K = NftOp::Kind;
  if (have.table_present && have.structure_ok) return {};
  std::vector<NftOp> ops;
  if (have.table_present) ops.push_back(tableOp(K::kDeleteTable));
  ops.push_back(tableOp(K::kCreateTable));
  // A rebuild replaces a table that may be enforcing mappings now: the new
  // table starts with everything the old one held (counters before the
  // elements that name them), in the same transaction, so no packet sees a
  // moment without its mapping or its fail-closed entry. The other providers
  // then converge it as usual.
  for (const auto& [name, _] : have.counters)
    ops.push_back(NftOp{K::kAddCounter, namespaceOfCounter(name), {}, {}, name});
  for (const auto& a : have.owned) ops.push_back(NftOp{K::kAddOwned, "", a, {}, {}});
  for (const auto& [pod, e] : have.flush_pending)
    ops.push_back(NftOp{K::kAddFlushRec, "", pod, e, {}});
  for (const auto& [pod, e] : have.snat) ops.push_back(NftOp{K::kAddSnat, "", pod, e, {}});
  for (const auto& [pod, b] : have.blocks) {
    NftOp o{K::kAddBlock, "", pod, b.egress, {}};
    o.first = b.first, o.last = b.last;
    ops.push_back(o);
  }
  for (const auto& [pod, c] : have.tx_counter)
    ops.push_back(NftOp{K::kAddTx, namespaceOfCounter(c), pod, {}, c});
  for (const auto& [pod, c] : have.pending)
    ops.push_back(NftOp{K::kAddPending, namespaceOfCounter(c), pod, {}, c});
  for (const auto& [pod, m] : have.steer) ops.push_back(NftOp{K::kAddSteer, "", pod, {}, {}, m});
  for (const auto& [pod, m] : have.returns) ops.push_back(NftOp{K::kAddReturn, "", pod, {}, {}, m});
  for (const auto& [node, pod] : have.peers) ops.push_back(NftOp{K::kAddPeer, "", pod, node, {}});
  for (const auto& n : have.nodes) ops.push_back(NftOp{K::kAddNode, "", n, {}, {}});
  return ops;
}

Status TableProvider::observe() {
  return s_.hasModel() ? okStatus() : s_.observe();
}

Status TableProvider::install(const DesiredState&, ExecStats& stats) {
  auto ops = planTable(s_.model());
  stats.planned_ops += ops.size();
  return s_.apply(ops, stats);
}

}  // namespace nsegress::gateway
