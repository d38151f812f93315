// Fake of the nftables port (gateway/ports/nft.h), for unit tests of pure
// logic only; the real implementation (netlink::NftTable) is exercised by
// tests/privileged, and both answer the same contract cases
// (tests/contract/nft_contract.h).
//
// FakeNft applies ops with gateway::applyOps (the kernel's semantics: one
// transaction is all-or-nothing; adding an element whose key exists with a
// different value fails with EEXIST; deleting what is absent fails with
// ENOENT; an element must reference an existing counter). The privileged tests
// check the same semantics against the real kernel.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernel_faults.h"
#include "nsegress/gateway/model.h"
#include "nsegress/gateway/ports/nft.h"

namespace nsegress::testing {

using gateway::NftOp;

class FakeNft : public gateway::NftKernel {
 public:
  gateway::ObservedNft state;
  std::vector<std::vector<NftOp>> transactions;               // every apply() call, in order
  std::function<std::optional<Error>(const NftOp&)> fail_on;  // inject a kernel refusal
  KernelFaults* faults = nullptr;

  Result<gateway::ObservedNft> observe() override { return state; }

  Status apply(const std::vector<NftOp>& ops) override {
    if (faults)
      if (auto r = faults->before("nft txn"); !r) return r;
    transactions.push_back(ops);
    if (fail_on) {
      for (size_t i = 0; i < ops.size(); ++i) {
        if (auto e = fail_on(ops[i])) {
          e->message = "op " + std::to_string(i) + " (" + ops[i].describe() + "): " + e->message;
          return *e;
        }
      }
    }
    auto r = gateway::applyOps(state, ops);  // the kernel's semantics, all or nothing
    if (r && faults) faults->after();
    return r;
  }
};

}  // namespace nsegress::testing
