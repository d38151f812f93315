// Fakes of the data-path interfaces, for unit tests of pure logic only. The
// real implementations (netlink/) are exercised by tests/privileged.
//
// FakeNft models the kernel semantics that matter to the planner: one
// transaction is all-or-nothing; adding an element whose key exists with a
// different value fails with EEXIST; deleting what is absent fails with
// ENOENT; an element must reference an existing counter.
#pragma once

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "nsegress/gateway/dataplane.h"

namespace nsegress::testing {

using gateway::NftOp;

class FakeNft : public gateway::NftKernel {
 public:
  gateway::ObservedNft state;
  std::vector<std::vector<NftOp>> transactions;               // every apply() call, in order
  std::function<std::optional<Error>(const NftOp&)> fail_on;  // inject a kernel refusal

  Result<gateway::ObservedNft> observe() override { return state; }

  Status apply(const std::vector<NftOp>& ops) override {
    transactions.push_back(ops);
    gateway::ObservedNft next = state;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (auto e = step(next, ops[i])) {
        e->message = "op " + std::to_string(i) + " (" + ops[i].describe() + "): " + e->message;
        return *e;  // all or nothing: `state` untouched
      }
    }
    state = std::move(next);
    return okStatus();
  }

 private:
  std::optional<Error> step(gateway::ObservedNft& s, const NftOp& op) {
    if (fail_on) {
      if (auto e = fail_on(op)) return e;
    }
    auto need_table = [&]() -> std::optional<Error> {
      if (!s.table_present) return makeError(ENOENT, "no table");
      return std::nullopt;
    };
    auto need_counter = [&](const std::string& c) -> std::optional<Error> {
      if (!s.counters.count(c)) return makeError(ENOENT, "no counter " + c);
      return std::nullopt;
    };
    switch (op.kind) {
      case NftOp::Kind::kCreateTable:
        if (s.table_present) return makeError(EEXIST, "table exists");
        s = {};
        s.table_present = true;
        s.structure_ok = true;
        return std::nullopt;
      case NftOp::Kind::kDeleteTable:
        if (!s.table_present) return makeError(ENOENT, "no table");
        s = {};
        return std::nullopt;
      case NftOp::Kind::kAddCounter:
        if (auto e = need_table()) return e;
        s.counters.emplace(op.counter, std::pair<uint64_t, uint64_t>{0, 0});
        return std::nullopt;
      case NftOp::Kind::kDelCounter: {
        if (!s.counters.erase(op.counter)) return makeError(ENOENT, "no counter");
        for (auto* m : {&s.tx_counter, &s.pending})
          for (auto& [k, v] : *m)
            if (v == op.counter) return makeError(EBUSY, "counter in use");
        return std::nullopt;
      }
      case NftOp::Kind::kAddSnat:
        return add(s.snat, op.key, op.egress, need_table());
      case NftOp::Kind::kDelSnat:
        return del(s.snat, op.key);
      case NftOp::Kind::kAddTx: {
        if (auto e = need_counter(op.counter)) return e;
        return add(s.tx_counter, op.key, op.counter, need_table());
      }
      case NftOp::Kind::kDelTx:
        return del(s.tx_counter, op.key);
      case NftOp::Kind::kAddPending: {
        if (auto e = need_counter(op.counter)) return e;
        return add(s.pending, op.key, op.counter, need_table());
      }
      case NftOp::Kind::kDelPending:
        return del(s.pending, op.key);
      case NftOp::Kind::kAddOwned:
        if (auto e = need_table()) return e;
        s.owned.insert(op.key);
        return std::nullopt;
      case NftOp::Kind::kDelOwned:
        if (!s.owned.erase(op.key)) return makeError(ENOENT, "not owned");
        return std::nullopt;
      case NftOp::Kind::kAddFlushRec:
        return add(s.flush_pending, op.key, op.egress, need_table());
      case NftOp::Kind::kDelFlushRec:
        return del(s.flush_pending, op.key);
    }
    return makeError(EINVAL, "unknown op");
  }

  template <typename V>
  static std::optional<Error> add(std::map<IpAddress, V>& m, const IpAddress& k, const V& v,
                                  std::optional<Error> table_err) {
    if (table_err) return table_err;
    auto [it, inserted] = m.emplace(k, v);
    if (!inserted && it->second != v) return makeError(EEXIST, "element exists");
    return std::nullopt;
  }
  template <typename V>
  static std::optional<Error> del(std::map<IpAddress, V>& m, const IpAddress& k) {
    if (!m.erase(k)) return makeError(ENOENT, "no element");
    return std::nullopt;
  }
};

class FakeAddresses : public gateway::AddressKernel {
 public:
  std::set<IpAddress> addrs;
  std::vector<std::string> log;
  bool fail_add = false;
  Result<std::set<IpAddress>> list() override { return addrs; }
  Status add(const IpAddress& a) override {
    if (fail_add) return makeError(EPERM, "add refused");
    log.push_back("add " + a.str());
    addrs.insert(a);
    return okStatus();
  }
  Status remove(const IpAddress& a) override {
    log.push_back("del " + a.str());
    addrs.erase(a);
    return okStatus();
  }
};

class FakeAnnouncer : public gateway::Announcer {
 public:
  std::vector<IpAddress> announced;
  void announce(const IpAddress& a) override { announced.push_back(a); }
};

class FakeConntrack : public gateway::ConntrackKernel {
 public:
  // flows: (original source, egress)
  std::vector<std::pair<IpAddress, IpAddress>> flows;
  std::vector<gateway::ConntrackFlush> flushes;
  Result<size_t> flush(const gateway::ConntrackFlush& f) override {
    flushes.push_back(f);
    size_t before = flows.size();
    std::erase_if(flows, [&](const auto& fl) {
      if (fl.second != f.egress) return false;
      return f.sources.empty() ||
             std::find(f.sources.begin(), f.sources.end(), fl.first) != f.sources.end();
    });
    return before - flows.size();
  }
  Result<std::map<IpAddress, size_t>> countByEgress() override {
    std::map<IpAddress, size_t> out;
    for (const auto& f : flows) out[f.second]++;
    return out;
  }
};

}  // namespace nsegress::testing
