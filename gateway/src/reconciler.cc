#include "nsegress/gateway/reconciler.h"

#include "nsegress/gateway/model.h"

namespace nsegress::gateway {

Result<Observed> Reconciler::observe() {
  auto nft = k_.nft.observe();
  if (!nft) return nft.error();
  auto addrs = k_.addresses.list();
  if (!addrs) return addrs.error();
  return Observed{std::move(*nft), std::move(*addrs)};
}

Result<ReconcileOutcome> Reconciler::reconcile(const DesiredState& desired, bool full) {
  ReconcileOutcome out;
  if (full || !model_) {
    auto obs = observe();
    if (!obs) {
      model_.reset();
      return obs.error();
    }
    model_ = std::move(*obs);
    out.counters = countersByNamespace(model_->nft);
    out.observed_kernel = true;
  }
  Plan p = plan(desired, *model_);
  out.planned_ops = p.size();
  if (p.empty()) return out;
  if (auto r = execute(p, k_, &out.stats); !r) {
    model_.reset();  // partly applied: read the kernel again next time
    return r.error();
  }
  // Committed: advance the model exactly as the kernel advanced.
  for (const auto* txn : {&p.intent, &p.main, &p.forget}) {
    if (auto r = applyCommitted(model_->nft, *txn); !r) {
      model_.reset();
      return r.error();
    }
  }
  for (const auto& a : p.addr_add) model_->uplink_addresses.insert(a);
  for (const auto& a : p.addr_del) model_->uplink_addresses.erase(a);
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
