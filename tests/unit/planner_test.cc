#include "nsegress/gateway/planner.h"

#include <gtest/gtest.h>

#include <random>

#include "fake_kernel.h"
#include "nsegress/gateway/executor.h"
#include "nsegress/gateway/reconciler.h"

namespace nsegress::gateway {
namespace {

using testing::FakeAddresses;
using testing::FakeAnnouncer;
using testing::FakeConntrack;
using testing::FakeNft;
using K = NftOp::Kind;

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

NamespaceEgress ns(std::string name, std::optional<const char*> egress,
                   std::vector<const char*> pods) {
  NamespaceEgress n;
  n.name = std::move(name);
  if (egress) n.egress_v4 = ip(*egress);
  for (auto p : pods) n.pod_ips.push_back(ip(p));
  return n;
}

struct World {
  FakeNft nft;
  FakeAddresses addrs;
  FakeAnnouncer announcer;
  FakeConntrack ct;
  Kernel kernel{nft, addrs, announcer, ct};
  Observed observed() { return Observed{*nft.observe(), *addrs.list()}; }
  Plan planFor(const DesiredState& d) { return plan(d, observed()); }
  void converge(const DesiredState& d) {
    auto p = planFor(d);
    auto r = execute(p, kernel, nullptr);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(planFor(d).empty()) << "second plan not empty";
  }
};

size_t count(const std::vector<NftOp>& ops, K k) {
  return static_cast<size_t>(
      std::count_if(ops.begin(), ops.end(), [&](auto& o) { return o.kind == k; }));
}

TEST(Planner, ColdStartBuildsTableAndEverythingInOneTransaction) {
  World w;
  DesiredState d{"gw",
                 1,
                 {ns("a", "203.0.113.10", {"10.244.1.2", "10.244.1.3"}),
                  ns("b", std::nullopt, {"10.244.2.2"})}};
  Plan p = w.planFor(d);
  ASSERT_FALSE(p.intent.empty());
  EXPECT_EQ(p.intent.front().kind, K::kCreateTable);
  // Mappings come in the main transaction, after the address exists.
  EXPECT_EQ(count(p.intent, K::kAddSnat), 0u);
  EXPECT_EQ(count(p.intent, K::kAddPending), 1u);
  EXPECT_EQ(count(p.main, K::kAddSnat), 2u);
  EXPECT_EQ(count(p.main, K::kAddTx), 2u);
  EXPECT_EQ(count(p.intent, K::kAddCounter), 4u);
  EXPECT_EQ(count(p.intent, K::kAddOwned), 1u);
  EXPECT_EQ(p.addr_add, std::vector<IpAddress>{ip("203.0.113.10")});
  w.converge(d);
  EXPECT_EQ(w.announcer.announced, std::vector<IpAddress>{ip("203.0.113.10")});
  EXPECT_EQ(w.nft.state.snat.at(ip("10.244.1.2")), ip("203.0.113.10"));
  EXPECT_EQ(w.nft.state.pending.at(ip("10.244.2.2")), "drop-b");
}

TEST(Planner, AdoptsExistingTableWithoutTouchingIt) {
  World w;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  w.converge(d);
  const size_t txns = w.nft.transactions.size();
  Plan p = w.planFor(d);  // e.g. a restarted agent
  EXPECT_TRUE(p.empty());
  EXPECT_EQ(w.nft.transactions.size(), txns);
}

TEST(Planner, AddingANamespaceTouchesOnlyItsElements) {
  World w;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", "203.0.113.11", {"10.244.2.2"})}};
  w.converge(d);
  d.namespaces.push_back(ns("c", "203.0.113.12", {"10.244.3.2", "10.244.3.3"}));
  Plan p = w.planFor(d);
  for (const auto& o : p.main) {
    if (o.kind == K::kAddOwned) continue;
    EXPECT_EQ(o.ns, "c") << o.describe();
  }
  EXPECT_EQ(p.main.size(), 2u /*counters*/ + 4u /*snat+tx x2*/);
  EXPECT_EQ(p.intent.size(), 1u);  // ownership of 203.0.113.12
  EXPECT_TRUE(p.flush.empty());
  EXPECT_TRUE(p.addr_del.empty());
}

TEST(Planner, PendingToLiveIsOneAtomicSwitch) {
  World w;
  DesiredState d{"gw", 1, {ns("a", std::nullopt, {"10.244.1.2"})}};
  w.converge(d);
  d.namespaces[0].egress_v4 = ip("203.0.113.10");
  Plan p = w.planFor(d);
  EXPECT_EQ(count(p.main, K::kDelPending), 1u);
  EXPECT_EQ(count(p.main, K::kAddSnat), 1u);
  EXPECT_EQ(count(p.main, K::kAddTx), 1u);
  // The address comes first, so the mapping never points at an absent address.
  EXPECT_EQ(p.addr_add.size(), 1u);
}

TEST(Planner, ReleaseRemovesElementsAddressFlowsAndOwnership) {
  World w;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", "203.0.113.11", {"10.244.2.2"})}};
  w.converge(d);
  w.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}, {ip("10.244.2.2"), ip("203.0.113.11")}};
  d.namespaces.erase(d.namespaces.begin());
  Plan p = w.planFor(d);
  EXPECT_EQ(count(p.main, K::kDelSnat), 1u);
  EXPECT_EQ(count(p.main, K::kDelTx), 1u);
  EXPECT_EQ(count(p.main, K::kDelCounter), 2u);
  EXPECT_EQ(p.addr_del, std::vector<IpAddress>{ip("203.0.113.10")});
  ASSERT_EQ(p.flush.size(), 1u);
  EXPECT_EQ(p.flush[0].egress, ip("203.0.113.10"));
  EXPECT_TRUE(p.flush[0].sources.empty());
  EXPECT_EQ(p.flush[0].ns, "a");
  EXPECT_EQ(count(p.forget, K::kDelOwned), 1u);
  w.converge(d);
  EXPECT_EQ(w.ct.flows.size(), 1u) << "flows of the other namespace are untouched";
  EXPECT_FALSE(w.addrs.addrs.count(ip("203.0.113.10")));
  EXPECT_TRUE(w.addrs.addrs.count(ip("203.0.113.11")));
}

TEST(Planner, ReleaseOfSharedAddressKeepsItAndFlushesOnlyThatNamespace) {
  World w;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", "203.0.113.10", {"10.244.2.2"})}};
  w.converge(d);
  w.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}, {ip("10.244.2.2"), ip("203.0.113.10")}};
  d.namespaces.erase(d.namespaces.begin());
  Plan p = w.planFor(d);
  EXPECT_TRUE(p.addr_del.empty());
  EXPECT_EQ(count(p.forget, K::kDelOwned), 0u);
  EXPECT_EQ(count(p.main, K::kAddFlushRec), 1u) << "flush debt recorded with the removal";
  ASSERT_EQ(p.flush.size(), 1u);
  EXPECT_EQ(p.flush[0].sources, std::vector<IpAddress>{ip("10.244.1.2")});
  w.converge(d);
  ASSERT_EQ(w.ct.flows.size(), 1u);
  EXPECT_EQ(w.ct.flows[0].first, ip("10.244.2.2"));
}

TEST(Planner, ForeignAddressOnUplinkIsUsedButNeverClaimedOrRemoved) {
  World w;
  w.addrs.addrs.insert(ip("198.51.100.1"));  // the node's own address
  DesiredState d{"gw", 1, {ns("a", "198.51.100.1", {"10.244.1.2"})}};
  Plan p = w.planFor(d);
  EXPECT_EQ(count(p.intent, K::kAddOwned), 0u);
  EXPECT_TRUE(p.addr_add.empty());
  w.converge(d);
  d.namespaces.clear();
  p = w.planFor(d);
  EXPECT_TRUE(p.addr_del.empty());
  w.converge(d);
  EXPECT_TRUE(w.addrs.addrs.count(ip("198.51.100.1")));
}

TEST(Planner, WrongStructureIsRebuiltInOneTransactionKeepingOwnership) {
  World w;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  w.converge(d);
  w.nft.state.structure_ok = false;  // e.g. uplink renamed or a chain deleted by hand
  Plan p = w.planFor(d);
  ASSERT_GE(p.intent.size(), 2u);
  EXPECT_EQ(p.intent[0].kind, K::kDeleteTable);
  EXPECT_EQ(p.intent[1].kind, K::kCreateTable);
  EXPECT_EQ(count(p.intent, K::kAddOwned), 1u);
  EXPECT_EQ(count(p.intent, K::kAddSnat), 1u) << "address present: mapping in the rebuild txn";
  EXPECT_TRUE(p.main.empty());
  EXPECT_TRUE(p.addr_add.empty()) << "address already there";
  w.converge(d);
}

TEST(Planner, RebuildHoldsPodsFailClosedUntilTheirNewAddressExists) {
  World w;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  w.converge(d);
  w.nft.state.structure_ok = false;
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  Plan p = w.planFor(d);
  EXPECT_EQ(p.intent[0].kind, K::kDeleteTable);
  EXPECT_EQ(count(p.intent, K::kAddSnat), 1u) << "a: address already there";
  EXPECT_EQ(count(p.intent, K::kAddPending), 1u) << "b: held until 203.0.113.11 exists";
  EXPECT_EQ(count(p.main, K::kDelPending), 1u);
  EXPECT_EQ(count(p.main, K::kAddSnat), 1u);
  w.converge(d);
}

TEST(Planner, EgressChangeSwapsMappingAtomicallyAndFlushesOldFlows) {
  World w;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  w.converge(d);
  w.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}};
  d.namespaces[0].egress_v4 = ip("203.0.113.20");
  Plan p = w.planFor(d);
  EXPECT_EQ(count(p.main, K::kDelSnat), 1u);
  EXPECT_EQ(count(p.main, K::kAddSnat), 1u);
  w.converge(d);
  EXPECT_TRUE(w.ct.flows.empty());
  EXPECT_EQ(w.nft.state.snat.at(ip("10.244.1.2")), ip("203.0.113.20"));
}

TEST(Executor, StopsAtFirstFailureAndNextReconcileFinishes) {
  World w;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  w.addrs.fail_add = true;
  auto r = execute(w.planFor(d), w.kernel, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("add refused"), std::string::npos);
  // The table (and the ownership record) exist, but no mapping was committed:
  // nothing leaves with an address the node does not hold.
  EXPECT_TRUE(w.nft.state.snat.empty());
  w.addrs.fail_add = false;
  w.converge(d);
}

TEST(Executor, KernelRefusalNamesTheOpAndChangesNothing) {
  World w;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  w.converge(d);
  auto before = w.nft.state;
  w.nft.fail_on = [](const NftOp& o) -> std::optional<Error> {
    if (o.kind == K::kAddSnat) return makeError(ENOSPC, "map full");
    return std::nullopt;
  };
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  auto r = execute(w.planFor(d), w.kernel, nullptr);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("add snat 10.244.2.2 -> 203.0.113.11 (namespace b)"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(w.nft.state.snat, before.snat);
  EXPECT_EQ(w.nft.state.counters, before.counters);
}

TEST(Reconciler, ChangesUseTheModelAndResyncRepairsDrift) {
  World w;
  Reconciler rec(w.kernel);
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  auto r = rec.reconcile(d, /*full=*/true);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->observed_kernel);
  // A change is planned against the model: no kernel read needed.
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  r = rec.reconcile(d, /*full=*/false);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->observed_kernel);
  EXPECT_EQ(w.nft.state.snat.size(), 2u);
  // Someone deletes an element behind our back: only a full resync sees it.
  w.nft.state.snat.erase(ip("10.244.2.2"));
  r = rec.reconcile(d, /*full=*/false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->planned_ops, 0u);
  r = rec.reconcile(d, /*full=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->planned_ops, 1u);
  EXPECT_EQ(w.nft.state.snat.size(), 2u);
}

TEST(Reconciler, AFailureDropsTheModelSoTheNextRunReadsTheKernel) {
  World w;
  Reconciler rec(w.kernel);
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  ASSERT_TRUE(rec.reconcile(d, true));
  w.addrs.fail_add = true;
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  EXPECT_FALSE(rec.reconcile(d, false));
  EXPECT_FALSE(rec.hasModel());
  w.addrs.fail_add = false;
  auto r = rec.reconcile(d, false);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->observed_kernel);
  EXPECT_EQ(w.nft.state.snat.size(), 2u);
}

// Random walks over desired states, with crashes (a plan cut short at a random
// step) between reconciles. After every completed reconcile the kernel must
// equal the desired state exactly, no owned address may leak, and the flows of
// removed mappings must be gone.
class PlannerProperty : public ::testing::TestWithParam<int> {};

TEST_P(PlannerProperty, ConvergesFromAnyInterruptedState) {
  std::mt19937 rng(static_cast<unsigned>(GetParam()));
  World w;
  w.addrs.addrs.insert(ip("198.51.100.1"));  // foreign: must survive everything
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  for (int step = 0; step < 200; ++step) {
    DesiredState d{"gw", static_cast<uint64_t>(step), {}};
    const int nns = pick(6);
    for (int i = 0; i < nns; ++i) {
      NamespaceEgress n;
      n.name = "ns" + std::to_string(pick(8));
      if (std::any_of(d.namespaces.begin(), d.namespaces.end(),
                      [&](auto& x) { return x.name == n.name; }))
        continue;
      if (pick(4) != 0) n.egress_v4 = IpAddress::v4(0xCB007100u + static_cast<uint32_t>(pick(5)));
      const int pods = pick(3);
      for (int j = 0; j < pods; ++j) {
        auto pod = IpAddress::v4(0x0AF40000u + static_cast<uint32_t>(pick(24)));
        bool used = false;
        for (auto& x : d.namespaces)
          used |= std::find(x.pod_ips.begin(), x.pod_ips.end(), pod) != x.pod_ips.end();
        used |= std::find(n.pod_ips.begin(), n.pod_ips.end(), pod) != n.pod_ips.end();
        if (!used) n.pod_ips.push_back(pod);
      }
      d.namespaces.push_back(n);
    }
    // Live flows for what the kernel maps now.
    w.ct.flows.clear();
    for (auto& [pod, e] : w.nft.state.snat) w.ct.flows.emplace_back(pod, e);

    Plan p = w.planFor(d);
    if (pick(3) == 0 && !p.empty()) {
      // Crash: run only the first k steps of the plan.
      Plan cut;
      const int k = pick(6);
      if (k > 0) cut.intent = p.intent;
      if (k > 1) cut.addr_add = p.addr_add;
      if (k > 2) cut.main = p.main;
      if (k > 3) cut.addr_del = p.addr_del;
      if (k > 4) cut.flush = p.flush;
      ASSERT_TRUE(execute(cut, w.kernel, nullptr));
    }
    w.converge(d);

    // Kernel == desired.
    std::map<IpAddress, IpAddress> snat;
    std::set<IpAddress> egress;
    for (auto& n : d.namespaces) {
      if (n.egress_v4) egress.insert(*n.egress_v4);
      for (auto& pod : n.pod_ips)
        if (n.egress_v4) snat[pod] = *n.egress_v4;
    }
    ASSERT_EQ(w.nft.state.snat, snat) << "step " << step;
    std::set<IpAddress> expect_addrs = egress;
    expect_addrs.insert(ip("198.51.100.1"));
    ASSERT_EQ(w.addrs.addrs, expect_addrs) << "step " << step;
    // No flow survives for a mapping that no longer exists.
    for (auto& [pod, e] : w.ct.flows) {
      auto it = snat.find(pod);
      ASSERT_TRUE(it != snat.end() && it->second == e)
          << "stale flow " << pod.str() << " -> " << e.str() << " at step " << step;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, PlannerProperty, ::testing::Range(1, 21));

}  // namespace
}  // namespace nsegress::gateway
