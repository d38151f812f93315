#include "nsegress/gateway/executor.h"

namespace nsegress::gateway {

namespace {
Status txn(NftKernel& nft, const std::vector<NftOp>& ops, ExecStats& s) {
  if (ops.empty()) return okStatus();
  auto r = nft.apply(ops);
  if (!r) return r;
  s.nft_ops += ops.size();
  s.transactions++;
  return okStatus();
}
}  // namespace

Status execute(const Plan& plan, Kernel& k, ExecStats* stats) {
  ExecStats local;
  ExecStats& s = stats ? *stats : local;
  if (auto r = txn(k.nft, plan.intent, s); !r) return r;
  for (const auto& a : plan.addr_add) {
    if (auto r = k.addresses.add(a); !r) return r;
    k.announcer.announce(a);
    s.addresses_added++;
  }
  if (auto r = txn(k.nft, plan.main, s); !r) return r;
  for (const auto& a : plan.addr_del) {
    if (auto r = k.addresses.remove(a); !r) return r;
    s.addresses_removed++;
  }
  for (const auto& f : plan.flush) {
    auto n = k.conntrack.flush(f);
    if (!n) return n.error();
    s.flows_flushed += *n;
  }
  return txn(k.nft, plan.forget, s);
}

}  // namespace nsegress::gateway
