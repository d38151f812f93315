#include "nsegress/gateway/snat_provider.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "nsegress/gateway/address_provider.h"

namespace nsegress::gateway {

namespace {

using K = NftOp::Kind;

NftOp op(K k, std::string ns, IpAddress key = {}, IpAddress egress = {}, std::string counter = {}) {
  return NftOp{k, std::move(ns), key, egress, std::move(counter)};
}

// The maps as the desired state wants them.
struct Wanted {
  std::map<IpAddress, IpAddress> snat;
  std::map<IpAddress, BlockValue> blocks;
  std::map<IpAddress, std::string> tx;
  std::map<IpAddress, std::string> pending;
  std::map<IpAddress, std::string> pod_ns;
  std::set<std::string> counters;
};

Wanted wanted(const DesiredState& d, const std::set<IpAddress>& steered) {
  Wanted w;
  // Addresses no single namespace owns: dropped and counted apart.
  if (!d.blocked.empty()) w.counters.insert(kBlockedCounter);
  for (const auto& ip : d.blocked) w.pending[ip] = kBlockedCounter;
  for (const auto& ns : d.namespaces) {
    w.counters.insert(txCounterName(ns.name));
    w.counters.insert(dropCounterName(ns.name));
    for (const auto& pod : ns.pod_ips) {
      w.pod_ns[pod] = ns.name;
      auto e = ns.egressFor(pod.family());
      const PodPortBlock* b = e ? ns.blockOf(pod, *e) : nullptr;
      if (e && ns.port_blocks_required && !b) {
        // Its pool attributes by port and it has no block (yet, or none is
        // free): fail-closed, never translated to ports naming another pod.
        if (!steered.count(pod)) w.pending[pod] = dropCounterName(ns.name);
      } else if (e) {
        w.snat[pod] = *e;
        w.tx[pod] = txCounterName(ns.name);
        if (b) w.blocks[pod] = BlockValue{*e, b->first, b->last};
      } else if (!steered.count(pod)) {
        w.pending[pod] = dropCounterName(ns.name);
      }
    }
  }
  return w;
}

// Namespace of a pod, for attribution: as wanted, else as the kernel has it.
class Attribution {
 public:
  Attribution(const Wanted& w, const ObservedNft& have) : w_(w) {
    for (const auto& [pod, c] : have.tx_counter) have_[pod] = namespaceOfCounter(c);
    for (const auto& [pod, c] : have.pending) have_[pod] = namespaceOfCounter(c);
  }
  std::string operator()(const IpAddress& pod) const {
    if (auto it = w_.pod_ns.find(pod); it != w_.pod_ns.end()) return it->second;
    auto jt = have_.find(pod);
    return jt != have_.end() ? jt->second : std::string();
  }

 private:
  const Wanted& w_;
  std::map<IpAddress, std::string> have_;
};

// Element-level diff of one map: deletes for entries that vanish or change,
// adds for entries that appear or change.
template <typename V, typename MakeAdd, typename MakeDel>
void diffMap(const std::map<IpAddress, V>& have, const std::map<IpAddress, V>& want,
             std::vector<NftOp>& dels, std::vector<NftOp>& adds, MakeAdd make_add,
             MakeDel make_del) {
  for (const auto& [k, v] : have) {
    auto it = want.find(k);
    if (it == want.end() || it->second != v) dels.push_back(make_del(k, v));
  }
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) adds.push_back(make_add(k, v));
  }
}

// Phase 1: the element diffs of the three maps.
void planElements(const Wanted& w, const ObservedNft& have, const Attribution& nsOf,
                  std::vector<NftOp>& dels, std::vector<NftOp>& adds) {
  diffMap(
      have.snat, w.snat, dels, adds,
      [&](const IpAddress& k, const IpAddress& v) { return op(K::kAddSnat, nsOf(k), k, v); },
      [&](const IpAddress& k, const IpAddress& v) { return op(K::kDelSnat, nsOf(k), k, v); });
  diffMap(
      have.blocks, w.blocks, dels, adds,
      [&](const IpAddress& k, const BlockValue& v) {
        NftOp o = op(K::kAddBlock, nsOf(k), k, v.egress);
        o.first = v.first, o.last = v.last;
        return o;
      },
      [&](const IpAddress& k, const BlockValue& v) {
        return op(K::kDelBlock, nsOf(k), k, v.egress);
      });
  diffMap(
      have.tx_counter, w.tx, dels, adds,
      [&](const IpAddress& k, const std::string& c) { return op(K::kAddTx, nsOf(k), k, {}, c); },
      [&](const IpAddress& k, const std::string& c) { return op(K::kDelTx, nsOf(k), k, {}, c); });
  diffMap(
      have.pending, w.pending, dels, adds,
      [&](const IpAddress& k, const std::string& c) {
        return op(K::kAddPending, nsOf(k), k, {}, c);
      },
      [&](const IpAddress& k, const std::string& c) {
        return op(K::kDelPending, nsOf(k), k, {}, c);
      });
}

// Phase 2: the switch, ordered inside one transaction: counters are created
// before and deleted after the elements naming them; deletes come before
// adds, so a pod whose mapping changes is re-added in the same transaction.
void planSwitch(const Wanted& w, const ObservedNft& have, const Attribution& nsOf,
                std::vector<NftOp>& txn) {
  std::set<std::string> have_counters;
  for (const auto& [name, _] : have.counters)
    if (isOurCounter(name)) have_counters.insert(name);
  for (const auto& c : w.counters)
    if (!have_counters.count(c))
      txn.push_back(op(K::kAddCounter, namespaceOfCounter(c), {}, {}, c));
  std::vector<NftOp> dels, adds;
  planElements(w, have, nsOf, dels, adds);
  txn.insert(txn.end(), dels.begin(), dels.end());
  txn.insert(txn.end(), adds.begin(), adds.end());
  for (const auto& c : have_counters)
    if (!w.counters.count(c)) txn.push_back(op(K::kDelCounter, namespaceOfCounter(c), {}, {}, c));
}

// Adds `pod` to the flush of `egress` (one flush per egress and namespace).
void addFlush(SnatPlan& p, const IpAddress& egress, const IpAddress& pod, const std::string& ns,
              const std::set<IpAddress>& leaving) {
  if (leaving.count(egress)) return;  // flushed whole when the address leaves
  for (auto& f : p.flush) {
    if (f.egress == egress && f.ns == ns) {
      if (std::find(f.sources.begin(), f.sources.end(), pod) == f.sources.end())
        f.sources.push_back(pod);
      return;
    }
  }
  p.flush.push_back(ConntrackFlush{ns, egress, {pod}});
}

// Phase 3: conntrack debts. Flows SNATed by a mapping removed or changed
// must go; the debt is recorded (flush map) in the switch transaction and
// cleared only after the flush.
void planFlushes(const Wanted& w, const ObservedNft& have, const Attribution& nsOf,
                 const std::set<IpAddress>& leaving, SnatPlan& p) {
  std::map<IpAddress, IpAddress> owed = have.flush_pending;  // pod -> egress
  // Pods keeping their address with another (or a first, or no) port block:
  // their flows' ports would name another pod, so they go too.
  std::set<IpAddress> reblocked;
  for (const auto& [pod, e] : have.snat) {
    auto hb = have.blocks.find(pod);
    auto wb = w.blocks.find(pod);
    const bool same = (hb == have.blocks.end() && wb == w.blocks.end()) ||
                      (hb != have.blocks.end() && wb != w.blocks.end() && hb->second == wb->second);
    if (!same) reblocked.insert(pod);
  }
  for (const auto& [pod, e] : have.snat) {
    auto it = w.snat.find(pod);
    if (it != w.snat.end() && it->second == e && !reblocked.count(pod)) continue;
    auto old = have.flush_pending.find(pod);
    if (old != have.flush_pending.end() && old->second != e) {
      // An older debt for this pod: settle it in this plan too.
      p.main.push_back(op(K::kDelFlushRec, nsOf(pod), pod, old->second));
      addFlush(p, old->second, pod, nsOf(pod), leaving);
    }
    if (old == have.flush_pending.end() || old->second != e)
      p.main.push_back(op(K::kAddFlushRec, nsOf(pod), pod, e));
    owed[pod] = e;
  }
  for (const auto& [pod, e] : owed) {
    // If the pod maps to that same address again, its flows are legitimate.
    auto it = w.snat.find(pod);
    // A debt of a pod with a port block is always paid: it was left by a
    // block change (the address may be the same), possibly before a crash
    // that hides which block the flows had.
    if (it == w.snat.end() || it->second != e || reblocked.count(pod) || w.blocks.count(pod) ||
        have.blocks.count(pod))
      addFlush(p, e, pod, nsOf(pod), leaving);
    p.forget.push_back(op(K::kDelFlushRec, nsOf(pod), pod, e));
  }
}

using Clock = std::chrono::steady_clock;

}  // namespace

SnatPlan planSnat(const DesiredState& d, const ObservedNft& have,
                  const std::set<IpAddress>& leaving, const std::set<IpAddress>& steered) {
  SnatPlan p;
  const Wanted w = wanted(d, steered);
  const Attribution nsOf(w, have);
  planSwitch(w, have, nsOf, p.main);
  planFlushes(w, have, nsOf, leaving, p);
  return p;
}

namespace {
// Owned addresses the desired state no longer uses: they leave the node.
std::set<IpAddress> leavingAddresses(const DesiredState& d, const ObservedNft& have) {
  const auto wanted = wantedEgress(d);
  std::set<IpAddress> out;
  for (const auto& a : have.owned)
    if (!wanted.count(a)) out.insert(a);
  return out;
}
}  // namespace

Status SnatProvider::install(const DesiredState& desired, ExecStats& stats) {
  planned_.reset();
  std::set<IpAddress> steered;
  if (steer_)
    for (const auto& [pod, g] : steerView(desired, *steer_).steered) steered.insert(pod);
  auto p = planSnat(desired, s_.model(), leavingAddresses(desired, s_.model()), steered);
  stats.planned_ops += p.size();
  if (auto r = s_.apply(p.main, stats); !r) return r;
  planned_ = std::move(p);
  return okStatus();
}

Status SnatProvider::retire(const DesiredState&, ExecStats& stats) {
  if (!planned_) return okStatus();
  const SnatPlan p = std::move(*planned_);
  planned_.reset();
  const auto t = Clock::now();
  for (const auto& f : p.flush) {
    auto n = ct_.flush(f);
    if (!n) return n.error();
    stats.flows_flushed += *n;
  }
  stats.flush_seconds += std::chrono::duration<double>(Clock::now() - t).count();
  return s_.apply(p.forget, stats);
}

}  // namespace nsegress::gateway
