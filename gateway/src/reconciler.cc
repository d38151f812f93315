#include "nsegress/gateway/reconciler.h"

namespace nsegress::gateway {

Result<Observed> Reconciler::observe() {
  auto nft = k_.nft.observe();
  if (!nft) return nft.error();
  auto addrs = k_.addresses.list();
  if (!addrs) return addrs.error();
  return Observed{std::move(*nft), std::move(*addrs)};
}

Result<ReconcileOutcome> Reconciler::reconcile(const DesiredState& desired) {
  auto obs = observe();
  if (!obs) return obs.error();
  ReconcileOutcome out;
  out.counters = countersByNamespace(obs->nft);
  Plan p = plan(desired, *obs);
  out.planned_ops = p.size();
  if (p.empty()) return out;
  if (auto r = execute(p, k_, &out.stats); !r) return r.error();
  return out;
}

std::map<std::string, NamespaceCounters> countersByNamespace(const ObservedNft& nft) {
  std::map<std::string, NamespaceCounters> out;
  for (const auto& [name, v] : nft.counters) {
    if (name.starts_with("tx-")) {
      auto& c = out[name.substr(3)];
      c.tx_packets = v.first;
      c.tx_bytes = v.second;
    } else if (name.starts_with("drop-")) {
      auto& c = out[name.substr(5)];
      c.drop_packets = v.first;
      c.drop_bytes = v.second;
    }
  }
  return out;
}

}  // namespace nsegress::gateway
