// The data path's providers (table, addresses, snat) and the Dataplane that
// runs them, on the kernel fakes: each provider's plan, the order across
// providers, failures, the model, and a property test with crashes at every
// point that checks the invariants at every intermediate kernel state.
#include "nsegress/gateway/dataplane.h"

#include <gtest/gtest.h>

#include <random>

#include "fake_addresses.h"
#include "fake_conntrack.h"
#include "fake_nft.h"

namespace nsegress::gateway {
namespace {

using testing::FakeAddresses;
using testing::FakeAnnouncer;
using testing::FakeConntrack;
using testing::FakeNft;
using testing::KernelFaults;
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

struct Node {
  FakeNft nft;
  FakeAddresses addrs;
  FakeAnnouncer announcer;
  FakeConntrack ct;
  KernelFaults faults;
  std::unique_ptr<NodeDataplane> dp = fresh();

  Node() {
    nft.faults = &faults;
    addrs.faults = &faults;
    ct.faults = &faults;
  }
  // A new agent process: no model of the kernel.
  std::unique_ptr<NodeDataplane> fresh() {
    return std::make_unique<NodeDataplane>(Ports{nft, addrs, announcer, ct});
  }
  // The provider plans against the kernel as it is now.
  std::vector<NftOp> table() { return planTable(nft.state); }
  AddressPlan addresses(const DesiredState& d) { return planAddresses(d, nft.state, addrs.addrs); }
  SnatPlan snat(const DesiredState& d) {
    std::set<IpAddress> leaving;
    const auto wanted = wantedEgress(d);
    for (const auto& a : nft.state.owned)
      if (!wanted.count(a)) leaving.insert(a);
    return planSnat(d, nft.state, leaving);
  }
  void converge(const DesiredState& d) {
    auto r = dp->reconcile(d, /*full=*/true);
    ASSERT_TRUE(r) << r.error().message;
    auto again = fresh()->reconcile(d, /*full=*/true);
    ASSERT_TRUE(again);
    ASSERT_EQ(again->stats.planned_ops, 0u) << "a second reconcile has nothing to do";
  }
};

size_t count(const std::vector<NftOp>& ops, K k) {
  return static_cast<size_t>(
      std::count_if(ops.begin(), ops.end(), [&](auto& o) { return o.kind == k; }));
}

TEST(Dataplane, ColdStartCreatesTheTableThenAddressesThenEveryMappingInOneTransaction) {
  Node n;
  DesiredState d{"gw",
                 1,
                 {ns("a", "203.0.113.10", {"10.244.1.2", "10.244.1.3"}),
                  ns("b", std::nullopt, {"10.244.2.2"})}};
  EXPECT_EQ(n.table(), (std::vector<NftOp>{NftOp{K::kCreateTable, "", {}, {}, {}}}));
  n.converge(d);
  EXPECT_EQ(n.faults.trace,
            (std::vector<std::string>{"nft txn", "nft txn", "add 203.0.113.10", "nft txn"}))
      << "table, ownership record, address, then the switch";
  ASSERT_EQ(n.nft.transactions.size(), 3u);
  const auto& main = n.nft.transactions[2];
  EXPECT_EQ(count(main, K::kAddSnat), 2u);
  EXPECT_EQ(count(main, K::kAddTx), 2u);
  EXPECT_EQ(count(main, K::kAddPending), 1u);
  EXPECT_EQ(count(main, K::kAddCounter), 4u);
  EXPECT_EQ(n.nft.transactions[1],
            (std::vector<NftOp>{NftOp{K::kAddOwned, "", ip("203.0.113.10"), {}, {}}}));
  EXPECT_EQ(n.announcer.announced, std::vector<IpAddress>{ip("203.0.113.10")});
  EXPECT_EQ(n.nft.state.snat.at(ip("10.244.1.2")), ip("203.0.113.10"));
  EXPECT_EQ(n.nft.state.pending.at(ip("10.244.2.2")), "drop-b");
}

TEST(Dataplane, ARestartedAgentAdoptsTheKernelWithoutTouchingIt) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  n.converge(d);
  const size_t txns = n.nft.transactions.size();
  auto r = n.fresh()->reconcile(d);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->stats.planned_ops, 0u);
  EXPECT_EQ(n.nft.transactions.size(), txns);
}

TEST(Dataplane, AddingANamespaceTouchesOnlyItsElements) {
  Node n;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", "203.0.113.11", {"10.244.2.2"})}};
  n.converge(d);
  d.namespaces.push_back(ns("c", "203.0.113.12", {"10.244.3.2", "10.244.3.3"}));
  auto s = n.snat(d);
  for (const auto& o : s.main) EXPECT_EQ(o.ns, "c") << o.describe();
  EXPECT_EQ(s.main.size(), 2u /*counters*/ + 4u /*snat+tx x2*/);
  EXPECT_TRUE(s.flush.empty());
  auto a = n.addresses(d);
  EXPECT_EQ(a.intent.size(), 1u);  // ownership of 203.0.113.12
  EXPECT_EQ(a.add, std::vector<IpAddress>{ip("203.0.113.12")});
  EXPECT_TRUE(a.remove.empty());
  EXPECT_TRUE(n.table().empty());
}

TEST(Dataplane, PendingToLiveIsOneAtomicSwitchAfterTheAddressExists) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", std::nullopt, {"10.244.1.2"})}};
  n.converge(d);
  d.namespaces[0].egress_v4 = ip("203.0.113.10");
  auto s = n.snat(d);
  EXPECT_EQ(count(s.main, K::kDelPending), 1u);
  EXPECT_EQ(count(s.main, K::kAddSnat), 1u);
  EXPECT_EQ(count(s.main, K::kAddTx), 1u);
  n.faults.trace.clear();
  n.converge(d);
  EXPECT_EQ(n.faults.trace, (std::vector<std::string>{"nft txn", "add 203.0.113.10", "nft txn"}));
}

TEST(Dataplane, ReleaseRemovesElementsAddressFlowsAndOwnership) {
  Node n;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", "203.0.113.11", {"10.244.2.2"})}};
  n.converge(d);
  n.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}, {ip("10.244.2.2"), ip("203.0.113.11")}};
  d.namespaces.erase(d.namespaces.begin());
  auto s = n.snat(d);
  EXPECT_EQ(count(s.main, K::kDelSnat), 1u);
  EXPECT_EQ(count(s.main, K::kDelTx), 1u);
  EXPECT_EQ(count(s.main, K::kDelCounter), 2u);
  EXPECT_EQ(count(s.main, K::kAddFlushRec), 1u) << "the debt is recorded with the removal";
  auto a = n.addresses(d);
  EXPECT_EQ(a.remove, std::vector<IpAddress>{ip("203.0.113.10")});
  ASSERT_EQ(a.flush.size(), 1u);
  EXPECT_EQ(a.flush[0].egress, ip("203.0.113.10"));
  EXPECT_TRUE(a.flush[0].sources.empty());
  EXPECT_EQ(count(a.forget, K::kDelOwned), 1u);
  n.converge(d);
  EXPECT_EQ(n.ct.flows.size(), 1u) << "flows of the other namespace are untouched";
  ASSERT_EQ(n.ct.flushes.size(), 1u) << "one whole-address flush, no per-pod flush besides";
  EXPECT_EQ(n.ct.flushes[0].ns, "a") << "the flush names the namespace that used the address";
  EXPECT_FALSE(n.addrs.addrs.count(ip("203.0.113.10")));
  EXPECT_TRUE(n.addrs.addrs.count(ip("203.0.113.11")));
  EXPECT_TRUE(n.nft.state.flush_pending.empty());
  EXPECT_TRUE(n.nft.state.owned.count(ip("203.0.113.11")));
  EXPECT_FALSE(n.nft.state.owned.count(ip("203.0.113.10")));
}

TEST(Dataplane, ReleaseOfASharedAddressKeepsItAndFlushesOnlyThatNamespace) {
  Node n;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", "203.0.113.10", {"10.244.2.2"})}};
  n.converge(d);
  n.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}, {ip("10.244.2.2"), ip("203.0.113.10")}};
  d.namespaces.erase(d.namespaces.begin());
  auto a = n.addresses(d);
  EXPECT_TRUE(a.remove.empty());
  EXPECT_EQ(count(a.forget, K::kDelOwned), 0u);
  auto s = n.snat(d);
  EXPECT_EQ(count(s.main, K::kAddFlushRec), 1u) << "flush debt recorded with the removal";
  ASSERT_EQ(s.flush.size(), 1u);
  EXPECT_EQ(s.flush[0].sources, std::vector<IpAddress>{ip("10.244.1.2")});
  n.converge(d);
  ASSERT_EQ(n.ct.flows.size(), 1u);
  EXPECT_EQ(n.ct.flows[0].first, ip("10.244.2.2"));
}

TEST(Dataplane, AForeignAddressOnTheUplinkIsUsedButNeverClaimedOrRemoved) {
  Node n;
  n.addrs.addrs.insert(ip("198.51.100.1"));  // the node's own address
  DesiredState d{"gw", 1, {ns("a", "198.51.100.1", {"10.244.1.2"})}};
  auto a = n.addresses(d);
  EXPECT_TRUE(a.intent.empty());
  EXPECT_TRUE(a.add.empty());
  n.converge(d);
  d.namespaces.clear();
  EXPECT_TRUE(n.addresses(d).remove.empty());
  n.converge(d);
  EXPECT_TRUE(n.addrs.addrs.count(ip("198.51.100.1")));
}

TEST(Dataplane, AWrongStructureIsRebuiltInOneTransactionCarryingEverythingOver) {
  Node n;
  DesiredState d{
      "gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"}), ns("b", std::nullopt, {"10.244.2.2"})}};
  n.converge(d);
  const auto before = n.nft.state;
  n.nft.state.structure_ok = false;  // e.g. uplink renamed or a chain deleted by hand
  auto t = n.table();
  ASSERT_GE(t.size(), 2u);
  EXPECT_EQ(t[0].kind, K::kDeleteTable);
  EXPECT_EQ(t[1].kind, K::kCreateTable);
  EXPECT_EQ(count(t, K::kAddOwned), 1u);
  EXPECT_EQ(count(t, K::kAddSnat), 1u);
  EXPECT_EQ(count(t, K::kAddTx), 1u);
  EXPECT_EQ(count(t, K::kAddPending), 1u);
  EXPECT_EQ(std::count_if(t.begin(), t.end(),
                          [](auto& o) { return o.kind == K::kAddCounter && !o.ns.empty(); }),
            4)
      << "the namespaces' counters are carried over (the built-in ones too)";
  const size_t txns = n.nft.transactions.size();
  n.converge(d);
  EXPECT_EQ(n.nft.transactions.size(), txns + 1) << "the rebuild is the only change";
  EXPECT_EQ(n.nft.state.snat, before.snat);
  EXPECT_EQ(n.nft.state.pending, before.pending);
  EXPECT_EQ(n.nft.state.owned, before.owned);
}

TEST(Dataplane, ARebuildKeepsEnforcingAndANewMappingWaitsForItsAddress) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  n.converge(d);
  n.nft.state.structure_ok = false;
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  // At every kernel state: every mapped address is on the uplink, and pod a
  // is mapped throughout.
  n.faults.after_each = [&] {
    for (const auto& [pod, e] : n.nft.state.snat)
      ASSERT_TRUE(n.addrs.addrs.count(e)) << pod.str() << " mapped to absent " << e.str();
    ASSERT_TRUE(n.nft.state.snat.count(ip("10.244.1.2")));
  };
  n.faults.trace.clear();
  n.converge(d);
  EXPECT_EQ(n.faults.trace,
            (std::vector<std::string>{"nft txn", "nft txn", "add 203.0.113.11", "nft txn"}))
      << "rebuild, ownership record, address, switch";
}

// Attribution by port: a pod with a block is translated through it, one
// without is fail-closed; a rebuild carries the blocks; a block change
// flushes the pod's flows, also when the agent died between the switch and
// the flush (the debt is in the kernel, the block it replaced is not).
DesiredState blocked(uint16_t first) {
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2", "10.244.1.3"})}};
  d.namespaces[0].port_blocks_required = true;
  d.namespaces[0].port_blocks = {
      PodPortBlock{ip("203.0.113.10"), ip("10.244.1.2"), first, uint16_t(first + 1023)}};
  return d;
}

TEST(Dataplane, PortBlocksTranslateAPodThroughItsBlockAndHoldOneWithoutFailClosed) {
  Node n;
  n.converge(blocked(1024));
  EXPECT_EQ(n.nft.state.blocks.at(ip("10.244.1.2")), (BlockValue{ip("203.0.113.10"), 1024, 2047}));
  EXPECT_EQ(n.nft.state.snat.at(ip("10.244.1.2")), ip("203.0.113.10")) << "ICMP: the address";
  EXPECT_FALSE(n.nft.state.snat.count(ip("10.244.1.3")));
  EXPECT_EQ(n.nft.state.pending.at(ip("10.244.1.3")), dropCounterName("a"));
  // A rebuild carries the blocks in its one transaction.
  n.nft.state.structure_ok = false;
  EXPECT_EQ(count(n.table(), K::kAddBlock), 1u);
  const size_t txns = n.nft.transactions.size();
  n.converge(blocked(1024));
  EXPECT_EQ(n.nft.transactions.size(), txns + 1);
}

TEST(Dataplane, ABlockChangeFlushesThePodsFlowsAlsoAfterACrashBeforeTheFlush) {
  for (bool crash : {false, true}) {
    Node n;
    n.converge(blocked(1024));
    n.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}};
    const auto d = blocked(2048);
    if (crash) {
      auto p = n.snat(d);
      ASSERT_TRUE(n.nft.apply(p.main));  // the switch committed; the agent dies here
      ASSERT_EQ(n.ct.flows.size(), 1u);
      n.dp = n.fresh();
    }
    n.converge(d);
    EXPECT_TRUE(n.ct.flows.empty()) << (crash ? "after a crash" : "in one run");
    EXPECT_EQ(n.nft.state.blocks.at(ip("10.244.1.2")).first, 2048);
    EXPECT_TRUE(n.nft.state.flush_pending.empty());
  }
}

TEST(Dataplane, BlockedAddressesAreHeldFailClosedOnACounterOfTheirOwn) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  d.blocked = {ip("10.244.9.9")};
  n.converge(d);
  EXPECT_EQ(n.nft.state.pending.at(ip("10.244.9.9")), kBlockedCounter);
  EXPECT_TRUE(n.nft.state.counters.count(kBlockedCounter));
  d.blocked.clear();
  n.converge(d);
  EXPECT_FALSE(n.nft.state.pending.count(ip("10.244.9.9")));
  EXPECT_FALSE(n.nft.state.counters.count(kBlockedCounter)) << "removed when unused";
}

TEST(Dataplane, AnEgressChangeSwapsTheMappingAtomicallyAndFlushesOldFlows) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  n.converge(d);
  n.ct.flows = {{ip("10.244.1.2"), ip("203.0.113.10")}};
  d.namespaces[0].egress_v4 = ip("203.0.113.20");
  auto s = n.snat(d);
  EXPECT_EQ(count(s.main, K::kDelSnat), 1u);
  EXPECT_EQ(count(s.main, K::kAddSnat), 1u);
  n.converge(d);
  EXPECT_TRUE(n.ct.flows.empty());
  EXPECT_EQ(n.nft.state.snat.at(ip("10.244.1.2")), ip("203.0.113.20"));
}

TEST(Dataplane, StopsAtTheFirstFailureNamingTheProviderAndTheNextRunFinishes) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  n.addrs.fail_add = true;
  auto r = n.dp->reconcile(d);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "addresses: add refused");
  // The table and the ownership record exist, but no mapping was committed:
  // nothing leaves with an address the node does not hold.
  EXPECT_TRUE(n.nft.state.table_present);
  EXPECT_TRUE(n.nft.state.owned.count(ip("203.0.113.10")));
  EXPECT_TRUE(n.nft.state.snat.empty());
  n.addrs.fail_add = false;
  n.converge(d);
}

TEST(Dataplane, AKernelRefusalNamesTheOpAndChangesNothing) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  n.converge(d);
  auto before = n.nft.state;
  n.nft.fail_on = [](const NftOp& o) -> std::optional<Error> {
    if (o.kind == K::kAddSnat) return makeError(ENOSPC, "map full");
    return std::nullopt;
  };
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  auto r = n.dp->reconcile(d);
  ASSERT_FALSE(r);
  EXPECT_NE(
      r.error().message.find("snat: op 2 (add snat 10.244.2.2 -> 203.0.113.11 (namespace b))"),
      std::string::npos)
      << r.error().message;
  EXPECT_EQ(n.nft.state.snat, before.snat);
  EXPECT_EQ(n.nft.state.counters, before.counters);
}

TEST(Dataplane, ChangesUseTheModelAndAResyncRepairsDrift) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  auto r = n.dp->reconcile(d, /*full=*/true);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->observed_kernel);
  // A change is planned against the model: no kernel read needed.
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  r = n.dp->reconcile(d, /*full=*/false);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->observed_kernel);
  EXPECT_EQ(n.nft.state.snat.size(), 2u);
  // Someone deletes an element behind our back: only a full resync sees it.
  n.nft.state.snat.erase(ip("10.244.2.2"));
  r = n.dp->reconcile(d, /*full=*/false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->stats.planned_ops, 0u);
  r = n.dp->reconcile(d, /*full=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->stats.planned_ops, 1u);
  EXPECT_EQ(n.nft.state.snat.size(), 2u);
  EXPECT_EQ(r->counters.count("a"), 1u) << "a full read reports the counters";
}

TEST(Dataplane, AFailureDropsTheModelSoTheNextRunReadsTheKernel) {
  Node n;
  DesiredState d{"gw", 1, {ns("a", "203.0.113.10", {"10.244.1.2"})}};
  ASSERT_TRUE(n.dp->reconcile(d, true));
  n.addrs.fail_add = true;
  d.namespaces.push_back(ns("b", "203.0.113.11", {"10.244.2.2"}));
  EXPECT_FALSE(n.dp->reconcile(d, false));
  for (auto* p : n.dp->dataplane().providers()) EXPECT_FALSE(p->hasModel()) << p->name();
  n.addrs.fail_add = false;
  auto r = n.dp->reconcile(d, false);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->observed_kernel);
  EXPECT_EQ(n.nft.state.snat.size(), 2u);
}

// Random walks over desired states, with crashes after a random number of
// kernel operations (a new agent then takes over with no model). At every
// intermediate kernel state: every mapped address is on the uplink, and a
// pod that was mapped or held fail-closed, and is still wanted, stays so.
// After every completed reconcile the kernel equals the desired state, no
// owned address leaks, and no flow of a removed mapping survives.
class DataplaneProperty : public ::testing::TestWithParam<int> {};

TEST_P(DataplaneProperty, ConvergesFromAnyInterruptedStateWithoutEverLeaking) {
  std::mt19937 rng(static_cast<unsigned>(GetParam()));
  Node n;
  n.addrs.addrs.insert(ip("198.51.100.1"));  // foreign: must survive everything
  auto pick = [&](int k) { return static_cast<int>(rng() % static_cast<unsigned>(k)); };
  std::set<IpAddress> guarded;  // pods that must stay mapped or fail-closed in this step
  int step = 0;
  n.faults.after_each = [&] {
    for (const auto& [pod, e] : n.nft.state.snat)
      ASSERT_TRUE(n.addrs.addrs.count(e))
          << "step " << step << ": " << pod.str() << " mapped to absent " << e.str();
    for (const auto& pod : guarded)
      ASSERT_TRUE(n.nft.state.snat.count(pod) || n.nft.state.pending.count(pod))
          << "step " << step << ": " << pod.str() << " unprotected";
  };
  for (step = 0; step < 200; ++step) {
    DesiredState d{"gw", static_cast<uint64_t>(step), {}};
    const int nns = pick(6);
    for (int i = 0; i < nns; ++i) {
      NamespaceEgress x;
      x.name = "ns" + std::to_string(pick(8));
      if (std::any_of(d.namespaces.begin(), d.namespaces.end(),
                      [&](auto& y) { return y.name == x.name; }))
        continue;
      if (pick(4) != 0) x.egress_v4 = IpAddress::v4(0xCB007100u + static_cast<uint32_t>(pick(5)));
      const int pods = pick(3);
      for (int j = 0; j < pods; ++j) {
        auto pod = IpAddress::v4(0x0AF40000u + static_cast<uint32_t>(pick(24)));
        bool used = std::find(x.pod_ips.begin(), x.pod_ips.end(), pod) != x.pod_ips.end();
        for (auto& y : d.namespaces)
          used |= std::find(y.pod_ips.begin(), y.pod_ips.end(), pod) != y.pod_ips.end();
        if (!used) x.pod_ips.push_back(pod);
      }
      d.namespaces.push_back(x);
    }
    // Live flows for what the kernel maps now.
    n.ct.flows.clear();
    for (auto& [pod, e] : n.nft.state.snat) n.ct.flows.emplace_back(pod, e);
    guarded.clear();
    for (auto& x : d.namespaces)
      for (auto& pod : x.pod_ips)
        if (n.nft.state.snat.count(pod) || n.nft.state.pending.count(pod)) guarded.insert(pod);

    if (pick(3) == 0) {
      // Crash after k kernel operations; the next agent starts without a model.
      n.faults.fail_after = pick(8);
      (void)n.dp->reconcile(d, pick(2) == 0);
      n.faults.fail_after = -1;
      n.dp = n.fresh();
    }
    auto r = n.dp->reconcile(d, pick(2) == 0);
    ASSERT_TRUE(r) << r.error().message;
    if (HasFatalFailure()) return;

    // Kernel == desired.
    std::map<IpAddress, IpAddress> snat;
    std::set<IpAddress> egress;
    for (auto& x : d.namespaces) {
      if (x.egress_v4) egress.insert(*x.egress_v4);
      for (auto& pod : x.pod_ips)
        if (x.egress_v4) snat[pod] = *x.egress_v4;
    }
    ASSERT_EQ(n.nft.state.snat, snat) << "step " << step;
    std::set<IpAddress> expect_addrs = egress;
    expect_addrs.insert(ip("198.51.100.1"));
    ASSERT_EQ(n.addrs.addrs, expect_addrs) << "step " << step;
    ASSERT_TRUE(n.nft.state.flush_pending.empty()) << "step " << step;
    // No flow survives for a mapping that no longer exists.
    for (auto& [pod, e] : n.ct.flows) {
      auto it = snat.find(pod);
      ASSERT_TRUE(it != snat.end() && it->second == e)
          << "stale flow " << pod.str() << " -> " << e.str() << " at step " << step;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, DataplaneProperty, ::testing::Range(1, 21));

}  // namespace
}  // namespace nsegress::gateway
