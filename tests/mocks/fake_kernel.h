// Fakes of the data-path interfaces, for unit tests of pure logic only. The
// real implementations (netlink/) are exercised by tests/privileged.
//
// FakeNft applies ops with gateway::applyOps (the kernel's semantics: one
// transaction is all-or-nothing; adding an element whose key exists with a
// different value fails with EEXIST; deleting what is absent fails with
// ENOENT; an element must reference an existing counter). The privileged tests
// check the same semantics against the real kernel.
#pragma once

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "nsegress/gateway/dataplane.h"
#include "nsegress/gateway/model.h"

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
    if (fail_on) {
      for (size_t i = 0; i < ops.size(); ++i) {
        if (auto e = fail_on(ops[i])) {
          e->message = "op " + std::to_string(i) + " (" + ops[i].describe() + "): " + e->message;
          return *e;
        }
      }
    }
    return gateway::applyOps(state, ops);  // the kernel's semantics, all or nothing
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
