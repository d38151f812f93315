#include "nsegress/gateway/model.h"

namespace nsegress::gateway {

namespace {
constexpr std::string_view kTxPrefix = "tx-";
constexpr std::string_view kDropPrefix = "drop-";
}  // namespace

std::string txCounterName(const std::string& ns) {
  return std::string(kTxPrefix) + ns;
}
std::string dropCounterName(const std::string& ns) {
  return std::string(kDropPrefix) + ns;
}
std::string namespaceOfCounter(const std::string& counter) {
  if (counter.starts_with(kTxPrefix)) return counter.substr(kTxPrefix.size());
  if (counter.starts_with(kDropPrefix)) return counter.substr(kDropPrefix.size());
  return {};
}
bool isOurCounter(const std::string& name) {
  return name.starts_with(kTxPrefix) || name.starts_with(kDropPrefix) || name == kBlockedCounter;
}

std::string NftOp::describe() const {
  auto suffix = ns.empty() ? std::string() : " (namespace " + ns + ")";
  switch (kind) {
    case Kind::kCreateTable:
      return "create table";
    case Kind::kDeleteTable:
      return "delete table";
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
    case Kind::kAddSteer:
      return "add steering " + key.str() + " -> mark " + std::to_string(mark) + suffix;
    case Kind::kDelSteer:
      return "delete steering " + key.str() + suffix;
    case Kind::kAddPeer:
      return "add tunnel peer " + egress.str() + " . " + key.str() + suffix;
    case Kind::kDelPeer:
      return "delete tunnel peer " + egress.str() + " . " + key.str() + suffix;
    case Kind::kAddReturn:
      return "add return " + key.str() + " -> mark " + std::to_string(mark) + suffix;
    case Kind::kDelReturn:
      return "delete return " + key.str() + suffix;
    case Kind::kAddNode:
      return "add node " + key.str();
    case Kind::kDelNode:
      return "delete node " + key.str();
    case Kind::kAddBlock:
      return "add port block " + key.str() + " -> " + egress.str() + " ports " +
             std::to_string(first) + "-" + std::to_string(last) + suffix;
    case Kind::kDelBlock:
      return "delete port block " + key.str() + suffix;
  }
  return "unknown op";
}

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
    for (const char* c : kBuiltinCounters)
      s.counters.emplace(c, std::pair<uint64_t, uint64_t>{0, 0});
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
    case K::kAddBlock:
      if (op.first == 0 || op.first > op.last || op.egress.family() != op.key.family())
        return makeError(EINVAL, "bad port block");
      return add(s.blocks, op.key, BlockValue{op.egress, op.first, op.last});
    case K::kDelBlock:
      return del(s.blocks, op.key);
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
    case K::kAddSteer:
      return add(s.steer, op.key, op.mark);
    case K::kDelSteer:
      return del(s.steer, op.key);
    case K::kAddPeer:
      s.peers.emplace(op.egress, op.key);
      return std::nullopt;
    case K::kDelPeer:
      if (!s.peers.erase({op.egress, op.key})) return makeError(ENOENT, "no such element");
      return std::nullopt;
    case K::kAddReturn:
      return add(s.returns, op.key, op.mark);
    case K::kDelReturn:
      return del(s.returns, op.key);
    case K::kAddNode:
      s.nodes.insert(op.key);
      return std::nullopt;
    case K::kDelNode:
      if (!s.nodes.erase(op.key)) return makeError(ENOENT, "no such element");
      return std::nullopt;
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
