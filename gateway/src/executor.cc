#include "nsegress/gateway/executor.h"

#include <chrono>

namespace nsegress::gateway {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

Status txn(NftKernel& nft, const std::vector<NftOp>& ops, ExecStats& s) {
  if (ops.empty()) return okStatus();
  const auto t0 = Clock::now();
  auto r = nft.apply(ops);
  s.nft_seconds += since(t0);
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
  auto t = Clock::now();
  for (const auto& a : plan.addr_add) {
    if (auto r = k.addresses.add(a); !r) return r;
    k.announcer.announce(a);
    s.addresses_added++;
  }
  s.address_seconds += since(t);
  if (auto r = txn(k.nft, plan.main, s); !r) return r;
  t = Clock::now();
  for (const auto& a : plan.addr_del) {
    if (auto r = k.addresses.remove(a); !r) return r;
    s.addresses_removed++;
  }
  s.address_seconds += since(t);
  t = Clock::now();
  for (const auto& f : plan.flush) {
    auto n = k.conntrack.flush(f);
    if (!n) return n.error();
    s.flows_flushed += *n;
  }
  s.flush_seconds += since(t);
  return txn(k.nft, plan.forget, s);
}

}  // namespace nsegress::gateway
