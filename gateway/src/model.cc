#include "nsegress/gateway/model.h"

namespace nsegress::gateway {

namespace {
template <typename V>
std::optional<Error> add(std::map<IpAddress, V>& m, const IpAddress& k, const V& v) {
  auto [it, inserted] = m.emplace(k, v);
  // An identical element is accepted (no NLM_F_EXCL); a different value is not.
  if (!inserted && it->second != v) return makeError(EEXIST, "element exists with another value");
  return std::nullopt;
}
template <typename V>
std::optional<Error> del(std::map<IpAddress, V>& m, const IpAddress& k) {
  if (!m.erase(k)) return makeError(ENOENT, "no such element");
  return std::nullopt;
}
}  // namespace

std::optional<Error> applyOp(ObservedNft& s, const NftOp& op) {
  using K = NftOp::Kind;
  if (op.kind == K::kCreateTable) {
    if (s.table_present) return makeError(EEXIST, "table exists");
    s = {};
    s.table_present = true;
    s.structure_ok = true;
    return std::nullopt;
  }
  if (!s.table_present) return makeError(ENOENT, "no table");
  auto needCounter = [&](const std::string& c) -> std::optional<Error> {
    if (!s.counters.count(c)) return makeError(ENOENT, "no counter " + c);
    return std::nullopt;
  };
  switch (op.kind) {
    case K::kCreateTable:
      break;
    case K::kDeleteTable:
      s = {};
      return std::nullopt;
    case K::kAddCounter:
      s.counters.emplace(op.counter, std::pair<uint64_t, uint64_t>{0, 0});
      return std::nullopt;
    case K::kDelCounter:
      for (auto* m : {&s.tx_counter, &s.pending})
        for (auto& [k, v] : *m)
          if (v == op.counter) return makeError(EBUSY, "counter " + op.counter + " in use");
      if (!s.counters.erase(op.counter)) return makeError(ENOENT, "no counter " + op.counter);
      return std::nullopt;
    case K::kAddSnat:
      return add(s.snat, op.key, op.egress);
    case K::kDelSnat:
      return del(s.snat, op.key);
    case K::kAddTx:
      if (auto e = needCounter(op.counter)) return e;
      return add(s.tx_counter, op.key, op.counter);
    case K::kDelTx:
      return del(s.tx_counter, op.key);
    case K::kAddPending:
      if (auto e = needCounter(op.counter)) return e;
      return add(s.pending, op.key, op.counter);
    case K::kDelPending:
      return del(s.pending, op.key);
    case K::kAddOwned:
      s.owned.insert(op.key);
      return std::nullopt;
    case K::kDelOwned:
      if (!s.owned.erase(op.key)) return makeError(ENOENT, "not owned");
      return std::nullopt;
    case K::kAddFlushRec:
      return add(s.flush_pending, op.key, op.egress);
    case K::kDelFlushRec:
      return del(s.flush_pending, op.key);
  }
  return makeError(EINVAL, "unknown op");
}

Status applyOps(ObservedNft& s, const std::vector<NftOp>& ops) {
  ObservedNft next = s;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (auto e = applyOp(next, ops[i])) {
      e->message = "op " + std::to_string(i) + " (" + ops[i].describe() + "): " + e->message;
      return *e;
    }
  }
  s = std::move(next);
  return okStatus();
}

Status applyCommitted(ObservedNft& s, const std::vector<NftOp>& ops) {
  for (size_t i = 0; i < ops.size(); ++i) {
    if (auto e = applyOp(s, ops[i])) {
      e->message = "model out of step at op " + std::to_string(i) + " (" + ops[i].describe() +
                   "): " + e->message;
      return *e;
    }
  }
  return okStatus();
}

}  // namespace nsegress::gateway
