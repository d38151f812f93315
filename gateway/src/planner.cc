#include "nsegress/gateway/planner.h"

#include <algorithm>
#include <map>
#include <set>

namespace nsegress::gateway {

namespace {

constexpr std::string_view kTxPrefix = "tx-";
constexpr std::string_view kDropPrefix = "drop-";

std::string nsOfCounter(const std::string& counter) {
  if (counter.starts_with(kTxPrefix)) return counter.substr(kTxPrefix.size());
  if (counter.starts_with(kDropPrefix)) return counter.substr(kDropPrefix.size());
  return {};
}

bool isOurCounter(const std::string& name) {
  return name.starts_with(kTxPrefix) || name.starts_with(kDropPrefix);
}

NftOp op(NftOp::Kind k, std::string ns, IpAddress key = {}, IpAddress egress = {},
         std::string counter = {}) {
  return NftOp{k, std::move(ns), key, egress, std::move(counter)};
}

struct Wanted {
  std::map<IpAddress, IpAddress> snat;
  std::map<IpAddress, std::string> tx;
  std::map<IpAddress, std::string> pending;
  std::map<IpAddress, std::string> pod_ns;
  std::set<std::string> counters;
  std::set<IpAddress> egress;
};

Wanted wanted(const DesiredState& d) {
  Wanted w;
  for (const auto& ns : d.namespaces) {
    w.counters.insert(txCounterName(ns.name));
    w.counters.insert(dropCounterName(ns.name));
    if (ns.egress_v4) w.egress.insert(*ns.egress_v4);
    if (ns.egress_v6) w.egress.insert(*ns.egress_v6);
    for (const auto& pod : ns.pod_ips) {
      w.pod_ns[pod] = ns.name;
      if (auto e = ns.egressFor(pod.family())) {
        w.snat[pod] = *e;
        w.tx[pod] = txCounterName(ns.name);
      } else {
        w.pending[pod] = dropCounterName(ns.name);
      }
    }
  }
  return w;
}

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

// Adds `pod` to the flush of `egress` (one flush op per egress and namespace).
void partialFlush(Plan& p, const IpAddress& egress, const IpAddress& pod, const std::string& ns,
                  const std::set<IpAddress>& whole) {
  if (whole.count(egress)) return;
  for (auto& f : p.flush) {
    if (f.egress == egress && f.ns == ns && !f.sources.empty()) {
      if (std::find(f.sources.begin(), f.sources.end(), pod) == f.sources.end())
        f.sources.push_back(pod);
      return;
    }
  }
  p.flush.push_back(ConntrackFlush{ns, egress, {pod}});
}

}  // namespace

std::string txCounterName(const std::string& ns) {
  return std::string(kTxPrefix) + ns;
}
std::string dropCounterName(const std::string& ns) {
  return std::string(kDropPrefix) + ns;
}

Plan plan(const DesiredState& desired, const Observed& observed) {
  Plan p;
  const Wanted w = wanted(desired);
  const bool rebuild = !observed.nft.structure_ok;

  // On a rebuild the kernel table is replaced, in one transaction, by a fresh
  // one holding the complete desired state: the old contents count as empty,
  // except the ownership records, which are carried over so that addresses we
  // own are still cleaned up later.
  ObservedNft have;
  if (rebuild) {
    have.owned = observed.nft.owned;
    have.flush_pending = observed.nft.flush_pending;
  } else {
    have = observed.nft;
  }
  std::vector<NftOp>& txn = rebuild ? p.intent : p.main;
  if (rebuild) {
    if (observed.nft.table_present) txn.push_back(op(NftOp::Kind::kDeleteTable, ""));
    txn.push_back(op(NftOp::Kind::kCreateTable, ""));
    for (const auto& a : have.owned) txn.push_back(op(NftOp::Kind::kAddOwned, "", a));
    for (const auto& [pod, e] : have.flush_pending)
      txn.push_back(op(NftOp::Kind::kAddFlushRec, "", pod, e));
  }

  // Namespace of each observed pod, for attribution of deletes and flushes.
  std::map<IpAddress, std::string> have_ns;
  for (const auto& [pod, c] : have.tx_counter) have_ns[pod] = nsOfCounter(c);
  for (const auto& [pod, c] : have.pending) have_ns[pod] = nsOfCounter(c);
  auto nsOf = [&](const IpAddress& pod) {
    auto it = w.pod_ns.find(pod);
    if (it != w.pod_ns.end()) return it->second;
    auto jt = have_ns.find(pod);
    return jt != have_ns.end() ? jt->second : std::string();
  };

  // --- addresses and ownership ------------------------------------------
  // An egress address already on the uplink that we do not own was put there
  // by someone else (for example the node's own address): we use it for SNAT
  // but never claim it and never remove it.
  for (const auto& e : w.egress) {
    const bool owned = have.owned.count(e) > 0;
    const bool present = observed.uplink_addresses.count(e) > 0;
    if (present && !owned) continue;
    if (!owned) {
      // Record ownership before the address exists, so a crash in between
      // leaves a record the next reconcile can act on.
      auto rec = op(NftOp::Kind::kAddOwned, "", e);
      if (rebuild) {
        txn.push_back(rec);
      } else {
        p.intent.push_back(rec);
      }
    }
    if (!present) p.addr_add.push_back(e);
  }
  for (const auto& a : have.owned) {
    if (w.egress.count(a)) continue;
    if (observed.uplink_addresses.count(a)) p.addr_del.push_back(a);
    p.flush.push_back(ConntrackFlush{"", a, {}});
    p.forget.push_back(op(NftOp::Kind::kDelOwned, "", a));
  }

  // --- counters (created before, deleted after, the elements using them) --
  std::set<std::string> have_counters;
  for (const auto& [name, _] : have.counters) {
    if (isOurCounter(name)) have_counters.insert(name);
  }
  for (const auto& c : w.counters) {
    if (!have_counters.count(c))
      txn.push_back(op(NftOp::Kind::kAddCounter, nsOfCounter(c), {}, {}, c));
  }

  // --- elements ------------------------------------------------------------
  std::vector<NftOp> dels, adds;
  diffMap(
      have.snat, w.snat, dels, adds,
      [&](const IpAddress& k, const IpAddress& v) {
        return op(NftOp::Kind::kAddSnat, nsOf(k), k, v);
      },
      [&](const IpAddress& k, const IpAddress& v) {
        return op(NftOp::Kind::kDelSnat, nsOf(k), k, v);
      });
  diffMap(
      have.tx_counter, w.tx, dels, adds,
      [&](const IpAddress& k, const std::string& c) {
        return op(NftOp::Kind::kAddTx, nsOf(k), k, {}, c);
      },
      [&](const IpAddress& k, const std::string& c) {
        return op(NftOp::Kind::kDelTx, nsOf(k), k, {}, c);
      });
  diffMap(
      have.pending, w.pending, dels, adds,
      [&](const IpAddress& k, const std::string& c) {
        return op(NftOp::Kind::kAddPending, nsOf(k), k, {}, c);
      },
      [&](const IpAddress& k, const std::string& c) {
        return op(NftOp::Kind::kDelPending, nsOf(k), k, {}, c);
      });
  // Deletes first: a pod whose mapping changes is deleted and re-added inside
  // the same transaction, so no packet ever sees it unmapped.
  txn.insert(txn.end(), dels.begin(), dels.end());
  if (rebuild && !observed.nft.table_present) {
    // Cold start (no table: nothing was enforced before us). The first
    // transaction creates the table, ownership records, counters and the
    // fail-closed entries; the mappings follow in the main transaction, after
    // the addresses exist.
    for (const auto& a : adds) {
      const bool mapping = a.kind == NftOp::Kind::kAddSnat || a.kind == NftOp::Kind::kAddTx;
      (mapping ? p.main : txn).push_back(a);
    }
  } else if (rebuild) {
    // Rebuild of a table of the wrong structure, which may be enforcing
    // mappings now: the rebuild transaction runs before addresses are added. A
    // pod whose egress address is not on the uplink yet starts fail-closed and
    // switches to its mapping in the main transaction, after the address
    // exists: no packet leaves with an address this node does not hold.
    const std::set<IpAddress> arriving(p.addr_add.begin(), p.addr_add.end());
    for (const auto& a : adds) {
      const bool waits = (a.kind == NftOp::Kind::kAddSnat && arriving.count(a.egress)) ||
                         (a.kind == NftOp::Kind::kAddTx && arriving.count(w.snat.at(a.key)));
      if (!waits) {
        txn.push_back(a);
        continue;
      }
      if (a.kind == NftOp::Kind::kAddSnat) {
        const std::string drop = dropCounterName(a.ns);
        txn.push_back(op(NftOp::Kind::kAddPending, a.ns, a.key, {}, drop));
        p.main.push_back(op(NftOp::Kind::kDelPending, a.ns, a.key, {}, drop));
      }
      p.main.push_back(a);
    }
  } else {
    txn.insert(txn.end(), adds.begin(), adds.end());
  }

  for (const auto& c : have_counters) {
    if (!w.counters.count(c))
      txn.push_back(op(NftOp::Kind::kDelCounter, nsOfCounter(c), {}, {}, c));
  }

  // --- conntrack ----------------------------------------------------------
  // Flows SNATed by a mapping we remove or change must go. The debt is
  // recorded in the kernel (flush map) by the same transaction that removes the
  // mapping, and cleared only after the flush, so a crash in between is
  // finished by the next reconcile. Whole-address flushes (address leaving the
  // node) subsume per-pod ones.
  std::set<IpAddress> whole;
  for (const auto& f : p.flush) whole.insert(f.egress);
  std::map<IpAddress, IpAddress> owed = have.flush_pending;  // pod -> egress
  for (const auto& [pod, e] : have.snat) {
    auto it = w.snat.find(pod);
    if (it != w.snat.end() && it->second == e) continue;
    auto old = have.flush_pending.find(pod);
    if (old != have.flush_pending.end() && old->second != e) {
      // An older debt for this pod: settle it in this plan too.
      txn.push_back(op(NftOp::Kind::kDelFlushRec, nsOf(pod), pod, old->second));
      partialFlush(p, old->second, pod, nsOf(pod), whole);
    }
    if (old == have.flush_pending.end() || old->second != e)
      txn.push_back(op(NftOp::Kind::kAddFlushRec, nsOf(pod), pod, e));
    owed[pod] = e;
  }
  for (const auto& [pod, e] : owed) {
    // If the pod maps to that same address again, its flows are legitimate.
    auto it = w.snat.find(pod);
    if (it == w.snat.end() || it->second != e) partialFlush(p, e, pod, nsOf(pod), whole);
    p.forget.push_back(op(NftOp::Kind::kDelFlushRec, nsOf(pod), pod, e));
  }
  // Attribute whole-address flushes to the namespace(s) that last used them.
  for (auto& f : p.flush) {
    if (!f.ns.empty()) continue;
    for (const auto& [pod, e] : have.snat) {
      if (e == f.egress) {
        f.ns = nsOf(pod);
        break;
      }
    }
  }
  return p;
}

std::string NftOp::describe() const {
  auto suffix = ns.empty() ? std::string() : " (namespace " + ns + ")";
  switch (kind) {
    case Kind::kCreateTable:
      return "create table";
    case Kind::kDeleteTable:
      return "delete table (rebuild)";
    case Kind::kAddCounter:
      return "add counter " + counter + suffix;
    case Kind::kDelCounter:
      return "delete counter " + counter + suffix;
    case Kind::kAddSnat:
      return "add snat " + key.str() + " -> " + egress.str() + suffix;
    case Kind::kDelSnat:
      return "delete snat " + key.str() + suffix;
    case Kind::kAddTx:
      return "add accounting " + key.str() + " -> " + counter + suffix;
    case Kind::kDelTx:
      return "delete accounting " + key.str() + suffix;
    case Kind::kAddPending:
      return "add fail-closed " + key.str() + " -> " + counter + suffix;
    case Kind::kDelPending:
      return "delete fail-closed " + key.str() + suffix;
    case Kind::kAddOwned:
      return "record ownership of " + key.str();
    case Kind::kDelOwned:
      return "forget ownership of " + key.str();
    case Kind::kAddFlushRec:
      return "record flush owed for " + key.str() + " -> " + egress.str() + suffix;
    case Kind::kDelFlushRec:
      return "clear flush owed for " + key.str() + suffix;
  }
  return "unknown op";
}

}  // namespace nsegress::gateway
