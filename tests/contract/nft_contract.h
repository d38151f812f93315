// The nftables port's contract: the same cases run against the fake
// (tests/mocks/fake_nft.h, instantiated in unit_tests) and the real kernel
// (netlink::NftTable in a lab network namespace, instantiated in
// privileged_tests). The fake and the model of the kernel the reconciler
// plans against (gateway/model.h) are only as good as their agreement with
// the kernel: a behaviour that differs fails one of the two instantiations.
//
// A backend is a class with `static std::unique_ptr<B> make()` (nullptr:
// skip, with `skipReason()`) and `gateway::NftKernel& kernel()` (a fresh,
// empty kernel per test).
#pragma once

#include <gtest/gtest.h>

#include "nsegress/gateway/ports/nft.h"

namespace nsegress::testing {

template <typename Backend>
class NftContract : public ::testing::Test {
 protected:
  using K = gateway::NftOp::Kind;
  void SetUp() override {
    backend_ = Backend::make();
    if (!backend_) GTEST_SKIP() << Backend::skipReason();
  }
  gateway::NftKernel& k() { return backend_->kernel(); }
  static IpAddress ip(const char* s) { return *IpAddress::parse(s); }
  static gateway::NftOp op(K kind, const char* key = nullptr, const char* egress = nullptr,
                           std::string counter = {}) {
    gateway::NftOp o{kind, "ns", {}, {}, std::move(counter)};
    if (key) o.key = ip(key);
    if (egress) o.egress = ip(egress);
    return o;
  }
  gateway::ObservedNft seen() {
    auto o = k().observe();
    EXPECT_TRUE(o) << o.error().message;
    return o ? *o : gateway::ObservedNft{};
  }
  // The counters besides the ones every table is created with.
  static std::map<std::string, std::pair<uint64_t, uint64_t>> own(const gateway::ObservedNft& o) {
    auto c = o.counters;
    for (const char* b : gateway::kBuiltinCounters) c.erase(b);
    return c;
  }
  void must(const std::vector<gateway::NftOp>& ops) {
    auto r = k().apply(ops);
    ASSERT_TRUE(r) << r.error().message;
  }
  int code(const std::vector<gateway::NftOp>& ops) {
    auto r = k().apply(ops);
    return r ? 0 : r.error().code;
  }
  std::unique_ptr<Backend> backend_;
};

TYPED_TEST_SUITE_P(NftContract);

TYPED_TEST_P(NftContract, AnEmptyKernelHasNoTableAndOpsOnItAreRefused) {
  using K = typename TestFixture::K;
  EXPECT_FALSE(this->seen().table_present);
  EXPECT_EQ(this->code({this->op(K::kAddOwned, "203.0.113.10")}), ENOENT);
  EXPECT_EQ(this->code({this->op(K::kAddCounter, nullptr, nullptr, "tx-ns")}), ENOENT);
}

TYPED_TEST_P(NftContract, CreatingTheTableGivesTheFullStructureAndCreatingItAgainIsRefused) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable)});
  auto o = this->seen();
  EXPECT_TRUE(o.table_present);
  EXPECT_TRUE(o.structure_ok);
  EXPECT_TRUE(o.snat.empty() && this->own(o).empty() && o.owned.empty());
  for (const char* b : gateway::kBuiltinCounters) EXPECT_EQ(o.counters.count(b), 1u) << b;
  EXPECT_EQ(this->code({this->op(K::kCreateTable)}), EEXIST)
      << "never a second set of rules on top of the first";
}

TYPED_TEST_P(NftContract, ElementsRoundTripAndAnIdenticalAddIsAccepted) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable), this->op(K::kAddCounter, nullptr, nullptr, "tx-ns"),
              this->op(K::kAddCounter, nullptr, nullptr, "drop-ns"),
              this->op(K::kAddSnat, "10.244.1.2", "203.0.113.10"),
              this->op(K::kAddSnat, "fd00::2", "2001:db8::10"),
              this->op(K::kAddTx, "10.244.1.2", nullptr, "tx-ns"),
              this->op(K::kAddPending, "10.244.1.3", nullptr, "drop-ns"),
              this->op(K::kAddOwned, "203.0.113.10"),
              this->op(K::kAddFlushRec, "10.244.1.9", "203.0.113.9")});
  auto o = this->seen();
  EXPECT_EQ(o.snat.at(this->ip("10.244.1.2")), this->ip("203.0.113.10"));
  EXPECT_EQ(o.snat.at(this->ip("fd00::2")), this->ip("2001:db8::10"));
  EXPECT_EQ(o.tx_counter.at(this->ip("10.244.1.2")), "tx-ns");
  EXPECT_EQ(o.pending.at(this->ip("10.244.1.3")), "drop-ns");
  EXPECT_EQ(o.owned, std::set<IpAddress>{this->ip("203.0.113.10")});
  EXPECT_EQ(o.flush_pending.at(this->ip("10.244.1.9")), this->ip("203.0.113.9"));
  EXPECT_EQ(this->own(o).size(), 2u);
  // Re-adding exactly what is there changes nothing and is not an error.
  this->must({this->op(K::kAddSnat, "10.244.1.2", "203.0.113.10"),
              this->op(K::kAddOwned, "203.0.113.10"),
              this->op(K::kAddCounter, nullptr, nullptr, "tx-ns")});
  EXPECT_EQ(this->seen().snat.size(), 2u);
}

TYPED_TEST_P(NftContract, AnElementWithAnotherValueIsNeverOverwritten) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable), this->op(K::kAddCounter, nullptr, nullptr, "tx-ns"),
              this->op(K::kAddCounter, nullptr, nullptr, "tx-other"),
              this->op(K::kAddSnat, "10.244.1.2", "203.0.113.10"),
              this->op(K::kAddTx, "10.244.1.2", nullptr, "tx-ns")});
  EXPECT_EQ(this->code({this->op(K::kAddSnat, "10.244.1.2", "203.0.113.99")}), EEXIST);
  EXPECT_EQ(this->code({this->op(K::kAddTx, "10.244.1.2", nullptr, "tx-other")}), EEXIST);
  auto o = this->seen();
  EXPECT_EQ(o.snat.at(this->ip("10.244.1.2")), this->ip("203.0.113.10"));
  EXPECT_EQ(o.tx_counter.at(this->ip("10.244.1.2")), "tx-ns");
}

TYPED_TEST_P(NftContract, DeletingWhatIsAbsentIsRefused) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable)});
  EXPECT_EQ(this->code({this->op(K::kDelSnat, "10.244.1.2")}), ENOENT);
  EXPECT_EQ(this->code({this->op(K::kDelOwned, "203.0.113.10")}), ENOENT);
  EXPECT_EQ(this->code({this->op(K::kDelFlushRec, "10.244.1.2")}), ENOENT);
  EXPECT_EQ(this->code({this->op(K::kDelCounter, nullptr, nullptr, "tx-ns")}), ENOENT);
}

TYPED_TEST_P(NftContract, CountersMustExistForTheirElementsAndCannotGoWhileUsed) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable)});
  EXPECT_EQ(this->code({this->op(K::kAddTx, "10.244.1.2", nullptr, "tx-ghost")}), ENOENT);
  this->must({this->op(K::kAddCounter, nullptr, nullptr, "drop-ns"),
              this->op(K::kAddPending, "10.244.1.2", nullptr, "drop-ns")});
  EXPECT_EQ(this->code({this->op(K::kDelCounter, nullptr, nullptr, "drop-ns")}), EBUSY);
  // The element first, then the counter, in one transaction: accepted.
  this->must({this->op(K::kDelPending, "10.244.1.2"),
              this->op(K::kDelCounter, nullptr, nullptr, "drop-ns")});
  EXPECT_TRUE(this->own(this->seen()).empty());
}

TYPED_TEST_P(NftContract, ATransactionIsAllOrNothing) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable), this->op(K::kAddCounter, nullptr, nullptr, "tx-ns")});
  const auto before = this->seen();
  EXPECT_EQ(
      this->code({this->op(K::kAddCounter, nullptr, nullptr, "tx-new"),
                  this->op(K::kAddSnat, "10.244.1.2", "203.0.113.10"),
                  this->op(K::kAddOwned, "203.0.113.10"), this->op(K::kDelSnat, "10.244.9.9")}),
      ENOENT);
  const auto after = this->seen();
  EXPECT_EQ(after.counters, before.counters);
  EXPECT_TRUE(after.snat.empty());
  EXPECT_TRUE(after.owned.empty());
}

TYPED_TEST_P(NftContract, AMappingChangesByDeleteThenAddInOneTransaction) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable), this->op(K::kAddSnat, "10.244.1.2", "203.0.113.10")});
  this->must(
      {this->op(K::kDelSnat, "10.244.1.2"), this->op(K::kAddSnat, "10.244.1.2", "203.0.113.20")});
  EXPECT_EQ(this->seen().snat.at(this->ip("10.244.1.2")), this->ip("203.0.113.20"));
}

TYPED_TEST_P(NftContract, DeleteAndCreateInOneTransactionRebuildsAnEmptyTable) {
  using K = typename TestFixture::K;
  this->must({this->op(K::kCreateTable), this->op(K::kAddOwned, "203.0.113.10")});
  this->must({this->op(K::kDeleteTable), this->op(K::kCreateTable),
              this->op(K::kAddOwned, "203.0.113.11")});
  auto o = this->seen();
  EXPECT_TRUE(o.structure_ok);
  EXPECT_EQ(o.owned, std::set<IpAddress>{this->ip("203.0.113.11")});
  this->must({this->op(K::kDeleteTable)});
  EXPECT_FALSE(this->seen().table_present);
  EXPECT_EQ(this->code({this->op(K::kDeleteTable)}), ENOENT);
}

REGISTER_TYPED_TEST_SUITE_P(NftContract, AnEmptyKernelHasNoTableAndOpsOnItAreRefused,
                            CreatingTheTableGivesTheFullStructureAndCreatingItAgainIsRefused,
                            ElementsRoundTripAndAnIdenticalAddIsAccepted,
                            AnElementWithAnotherValueIsNeverOverwritten,
                            DeletingWhatIsAbsentIsRefused,
                            CountersMustExistForTheirElementsAndCannotGoWhileUsed,
                            ATransactionIsAllOrNothing,
                            AMappingChangesByDeleteThenAddInOneTransaction,
                            DeleteAndCreateInOneTransactionRebuildsAnEmptyTable);

}  // namespace nsegress::testing
