#include "nsegress/gateway/address_provider.h"

#include <chrono>

namespace nsegress::gateway {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
}  // namespace

std::set<IpAddress> wantedEgress(const DesiredState& d) {
  std::set<IpAddress> out;
  for (const auto& ns : d.namespaces) {
    if (ns.egress_v4) out.insert(*ns.egress_v4);
    if (ns.egress_v6) out.insert(*ns.egress_v6);
  }
  return out;
}

AddressPlan planAddresses(const DesiredState& d, const ObservedNft& nft,
                          const std::set<IpAddress>& uplink) {
  AddressPlan p;
  const auto wanted = wantedEgress(d);
  for (const auto& e : wanted) {
    const bool owned = nft.owned.count(e) > 0;
    const bool present = uplink.count(e) > 0;
    if (present && !owned) continue;  // someone else's address: used, never claimed
    // Ownership is recorded before the address exists, so a crash in
    // between leaves a record the next reconcile acts on.
    if (!owned) p.intent.push_back(NftOp{NftOp::Kind::kAddOwned, "", e, {}, {}});
    if (!present) p.add.push_back(e);
  }
  for (const auto& a : nft.owned) {
    if (wanted.count(a)) continue;
    if (uplink.count(a)) p.remove.push_back(a);
    p.flush.push_back(ConntrackFlush{"", a, {}});
    p.forget.push_back(NftOp{NftOp::Kind::kDelOwned, "", a, {}, {}});
  }
  return p;
}

Status AddressProvider::observe() {
  if (!s_.hasModel())
    if (auto r = s_.observe(); !r) return r;
  auto l = a_.list();
  if (!l) {
    uplink_.reset();
    return l.error();
  }
  uplink_ = std::move(*l);
  return okStatus();
}

Status AddressProvider::install(const DesiredState& desired, ExecStats& stats) {
  const auto p = planAddresses(desired, s_.model(), *uplink_);
  stats.planned_ops += p.intent.size() + p.add.size();
  // Which namespace used each address that leaves, before the snat switch
  // moves its pods away (names the flush). Only when one leaves: O(pods).
  last_users_.clear();
  if (!p.flush.empty()) {
    std::set<IpAddress> leaving;
    for (const auto& f : p.flush) leaving.insert(f.egress);
    for (const auto& [pod, e] : s_.model().snat)
      if (leaving.count(e))
        if (auto it = s_.model().tx_counter.find(pod); it != s_.model().tx_counter.end())
          last_users_[e] = namespaceOfCounter(it->second);
  }
  if (auto r = s_.apply(p.intent, stats); !r) return r;
  const auto t = Clock::now();
  for (const auto& a : p.add) {
    if (auto r = a_.add(a); !r) {
      uplink_.reset();
      return r;
    }
    uplink_->insert(a);
    ann_.announce(a);
    stats.addresses_added++;
  }
  stats.address_seconds += since(t);
  return okStatus();
}

Status AddressProvider::retire(const DesiredState& desired, ExecStats& stats) {
  auto p = planAddresses(desired, s_.model(), *uplink_);
  stats.planned_ops += p.remove.size() + p.flush.size() + p.forget.size();
  auto t = Clock::now();
  for (const auto& a : p.remove) {
    if (auto r = a_.remove(a); !r) {
      uplink_.reset();
      return r;
    }
    uplink_->erase(a);
    stats.addresses_removed++;
  }
  stats.address_seconds += since(t);
  t = Clock::now();
  for (auto& f : p.flush) {
    if (auto it = last_users_.find(f.egress); it != last_users_.end()) f.ns = it->second;
    auto n = ct_.flush(f);
    if (!n) return n.error();
    stats.flows_flushed += *n;
  }
  stats.flush_seconds += since(t);
  return s_.apply(p.forget, stats);
}

}  // namespace nsegress::gateway
