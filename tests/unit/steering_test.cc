// Steering's pure parts: the desired state's nodes and gateways (wire
// format, validation), the per-node view, steerView and planSteering, and
// the node's data path on the kernel fakes: a pod of an annotated namespace
// is, at every intermediate kernel state, translated here, steered to a
// gateway whose next hop exists, or held — never none of them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "fake_addresses.h"
#include "fake_conntrack.h"
#include "fake_nft.h"
#include "fake_routes.h"
#include "nsegress/common/decode.h"
#include "nsegress/common/gateway_view.h"
#include "nsegress/gateway/dataplane.h"

namespace nsegress::gateway {
namespace {

using testing::FakeAddresses;
using testing::FakeAnnouncer;
using testing::FakeConntrack;
using testing::FakeNft;
using testing::FakeRoutes;
using testing::KernelFaults;
using K = NftOp::Kind;

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

// A cluster: gateways g1 (192.0.2.11), g2 (192.0.2.12), worker w1
// (192.0.2.13). Namespace pay (IPv4 on `pay_on`), pods 10.244.1.2 on g1,
// 10.244.3.2 and fd00:244:3::2 on w1; namespace idle: no address, pod
// 10.244.3.9 on w1.
DesiredState cluster(const std::string& self, const std::string& pay_on,
                     const char* egress = "203.0.113.10") {
  DesiredState d;
  d.gateway = self;
  NamespaceEgress pay;
  pay.name = "pay";
  pay.pod_ips = {ip("10.244.1.2"), ip("10.244.3.2"), ip("fd00:244:3::2")};
  pay.gateway_v4 = pay_on;
  if (pay_on == self && !pay_on.empty()) pay.egress_v4 = ip(egress);
  NamespaceEgress idle;
  idle.name = "idle";
  idle.pod_ips = {ip("10.244.3.9")};
  d.namespaces = {pay, idle};
  d.nodes = {{"g1", ip("192.0.2.11"), ip("fd00:c::11"), {ip("10.244.1.2")}},
             {"g2", ip("192.0.2.12"), ip("fd00:c::12"), {}},
             {"w1",
              ip("192.0.2.13"),
              ip("fd00:c::13"),
              {ip("10.244.3.2"), ip("10.244.3.9"), ip("fd00:244:3::2")}}};
  return d;
}

SteerConfig tunnel() {
  SteerConfig c;
  c.device = "eth0";
  return c;
}

// ---- wire format -----------------------------------------------------------------

TEST(SteeringState, NodesAndGatewaysRoundTrip) {
  const auto d = cluster("w1", "g1");
  auto back = parseDesiredState(serializeDesiredState(d));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, d);
  ASSERT_NE(back->self(), nullptr);
  EXPECT_EQ(back->self()->name, "w1");
  EXPECT_EQ(back->node("g2")->ipv4, ip("192.0.2.12"));
}

TEST(SteeringState, MalformedNodesAreRefusedWithTheField) {
  const std::string head =
      R"({"apiVersion":"nsegress.io/v1alpha1","kind":"GatewayDesiredState","gateway":"w1",
          "namespaces":[{"name":"pay","podIPs":["10.244.3.2"],"gatewayV4":"g1"}],"nodes":)";
  struct Case {
    std::string nodes, field;
  };
  for (const auto& c : std::vector<Case>{
           {R"([{"name":"g1","ipv4":"fd00::1"}])", "nodes[0].ipv4"},
           {R"([{"name":"g1","ipv6":"192.0.2.1"}])", "nodes[0].ipv6"},
           {R"([{"name":"g1"},{"name":"g1"}])", "nodes[1].name"},
           {R"([{"name":"../etc"}])", "nodes[0].name"},
           {R"([{"name":"g1","podIPs":["10.9.9.9"]}])", "nodes[0].podIPs[0]"},
           {R"([{"name":"g1","podIPs":["10.244.3.2"]},{"name":"w1","podIPs":["10.244.3.2"]}])",
            "nodes[1].podIPs[0]"},
           {R"([{"name":"g1","mac":"x"}])", "nodes[0].mac"},
           {R"({"name":"g1"})", "nodes"},
       }) {
    auto r = parseDesiredState(head + c.nodes + "}");
    ASSERT_FALSE(r) << c.nodes;
    EXPECT_EQ(r.error().message.rfind(c.field, 0), 0u) << r.error().message;
  }
  auto r = parseDesiredState(
      R"({"apiVersion":"nsegress.io/v1alpha1","kind":"GatewayDesiredState",
          "namespaces":[{"name":"pay","podIPs":[],"gatewayV4":"Not A Node"}]})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.rfind("namespaces[0].gatewayV4", 0), 0u) << r.error().message;
}

// ---- the per-node view -------------------------------------------------------------

TEST(SteeringView, EveryNodeLearnsWhereEachAddressLivesAndWhichPodsAreWhose) {
  GatewayViews v;
  Namespace pay{"pay", {}, {{"nsegress.io/pool", "dmz"}}};
  v.addNamespace(pay);
  AddressRecord r;
  r.ip = ip("203.0.113.10");
  r.state = AddressState::kAssigned;
  r.ns = "pay";
  r.node = "g1";
  v.addRecord(r);
  v.addNode(Node{"g1", {}, true, ip("192.0.2.11"), std::nullopt});
  v.addNode(Node{"w1", {}, true, ip("192.0.2.13"), std::nullopt});
  v.addPod(Pod{"pay", "a", "w1", {ip("10.244.3.2")}});
  v.addPod(Pod{"pay", "b", "g1", {ip("10.244.1.2")}});
  v.addPod(Pod{"other", "c", "w1", {ip("10.244.3.7")}});  // not listed: not anywhere
  const auto w = v.forNode("w1").state;
  ASSERT_EQ(w.namespaces.size(), 1u);
  EXPECT_EQ(w.namespaces[0].gateway_v4, "g1");
  EXPECT_FALSE(w.namespaces[0].egress_v4) << "hosted elsewhere";
  ASSERT_NE(w.self(), nullptr);
  EXPECT_EQ(w.self()->pod_ips, std::vector<IpAddress>{ip("10.244.3.2")});
  EXPECT_EQ(w.node("g1")->pod_ips, std::vector<IpAddress>{ip("10.244.1.2")});
  const auto g = v.forNode("g1").state;
  EXPECT_EQ(g.namespaces[0].egress_v4, ip("203.0.113.10"));
  // The state parses back (a pod on two nodes would not).
  EXPECT_TRUE(parseDesiredState(serializeDesiredState(w)));
  v.addPod(Pod{"pay", "dup", "g1", {ip("10.244.3.2")}});
  const auto w2 = v.forNode("w1").state;
  EXPECT_TRUE(w2.self()->pod_ips.empty()) << "an address on two nodes is local to neither";
  EXPECT_TRUE(parseDesiredState(serializeDesiredState(w2)));
}

// Found by the kube-objects fuzzer: an EgressIP naming a "node" that cannot
// be one made every node's view unparseable (a standalone gateway would have
// refused its whole state). The object is refused alone, and a view never
// writes such a name.
TEST(SteeringView, ANodeNameThatCannotBeANodeIsRefusedAndNeverWritten) {
  auto j = nlohmann::json::parse(
      R"({"metadata":{"name":"203.0.113.10"},"spec":{"ip":"203.0.113.10","pool":"dmz"},
          "status":{"state":"Assigned","namespace":"pay","node":"6-11-2510T:00:00Z"}})");
  auto r = decodeEgressIP(j);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("status.node"), std::string::npos) << r.error().message;
  GatewayViews v;
  v.addNamespace(Namespace{"pay", {}, {{"nsegress.io/pool", "dmz"}}});
  AddressRecord rec;
  rec.ip = ip("203.0.113.10");
  rec.state = AddressState::kAssigned;
  rec.ns = "pay";
  rec.node = "6-11-2510T:00:00Z";
  v.addRecord(rec);
  const auto s = v.forNode("w1").state;
  EXPECT_TRUE(s.namespaces[0].gateway_v4.empty());
  EXPECT_TRUE(parseDesiredState(serializeDesiredState(s)));
}

// ---- steerView ----------------------------------------------------------------------

TEST(SteerView, AWorkerSteersItsOwnPodsToTheGatewayThatHostsTheirAddress) {
  const auto v = steerView(cluster("w1", "g1"), tunnel());
  ASSERT_TRUE(v.tunnel);
  EXPECT_EQ(v.tunnel->local, ip("192.0.2.13"));
  EXPECT_EQ(v.tunnel->mac, tunnelMac("w1"));
  EXPECT_EQ(v.tunnel->mtu, 1450);
  EXPECT_EQ(v.steered, (std::map<IpAddress, std::string>{{ip("10.244.3.2"), "g1"}}))
      << "its IPv6 pod has no address of its family anywhere; idle has none at all";
  ASSERT_EQ(v.hops.count("g1"), 1u);
  EXPECT_EQ(v.hops.at("g1").via4, ip("192.0.2.11"));
  EXPECT_EQ(v.hops.at("g1").mac, tunnelMac("g1"));
  EXPECT_EQ(v.hops.at("g1").via6, tunnelLinkLocal(tunnelMac("g1")));
  EXPECT_TRUE(v.returns.empty()) << "a worker hosts nothing";
  EXPECT_EQ(v.nodes, (std::set<IpAddress>{ip("192.0.2.11"), ip("192.0.2.12")}));
  EXPECT_TRUE(v.peers.count({ip("192.0.2.11"), ip("10.244.1.2")}));
}

TEST(SteerView, TheHostingGatewayTranslatesAndSendsRepliesBackToThePodsNode) {
  const auto v = steerView(cluster("g1", "g1"), tunnel());
  EXPECT_TRUE(v.steered.empty()) << "its own pod of pay is translated here";
  EXPECT_EQ(v.returns, (std::map<IpAddress, std::string>{{ip("10.244.3.2"), "w1"}}));
  ASSERT_EQ(v.hops.count("w1"), 1u);
  EXPECT_EQ(v.hops.at("w1").via4, ip("192.0.2.13"));
}

TEST(SteerView, NothingIsSteeredToAGatewayThatCannotBeReached) {
  auto d = cluster("w1", "g1");
  d.nodes[0].ipv4.reset();  // g1 has no IPv4 underlay address
  EXPECT_TRUE(steerView(d, tunnel()).steered.empty());
  d = cluster("w1", "g9");  // not a node of the state
  EXPECT_TRUE(steerView(d, tunnel()).steered.empty());
  d = cluster("w1", "g1");
  d.gateway = "w9";  // this node is not in the state
  EXPECT_TRUE(steerView(d, tunnel()).steered.empty());
  // L2: IPv6 pods need the gateway's IPv6 underlay address.
  SteerConfig l2;
  l2.tunnel = false;
  l2.device = "eth0";
  d = cluster("w1", "");
  d.namespaces[0].gateway_v6 = "g1";
  d.nodes[0].ipv6.reset();
  EXPECT_TRUE(steerView(d, l2).steered.empty());
  d.nodes[0].ipv6 = ip("fd00:c::11");
  const auto v = steerView(d, l2);
  EXPECT_EQ(v.steered.count(ip("fd00:244:3::2")), 1u);
  EXPECT_EQ(v.hops.at("g1").dev, "eth0");
  EXPECT_FALSE(v.tunnel);
  EXPECT_TRUE(v.peers.empty()) << "an L2 underlay has no tunnel to check";
}

// ---- planSteering -------------------------------------------------------------------

TEST(PlanSteering, AGatewayKeepsItsSlotAcrossRestartsAndMovesAreDeleteThenAdd) {
  const auto want = steerView(cluster("w1", "g1"), tunnel());
  ObservedRoutes routes;
  ObservedNft nft;
  nft.table_present = true;
  auto p = planSteering(want, routes, nft);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->tunnel);
  EXPECT_EQ(p->add_slots, std::vector<int>{1});
  ASSERT_EQ(p->set_hops.size(), 1u);
  EXPECT_EQ(p->install.front().kind, K::kAddSteer);
  // The kernel as it now is (a restart): nothing to do.
  routes.tunnel = *want.tunnel;
  routes.slots = {1};
  routes.hops[1] = want.hops.at("g1");
  for (const auto& op : p->install) ASSERT_FALSE(applyOp(nft, op));
  p = planSteering(want, routes, nft);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->size(), 0u);
  // g1 sits in slot 5 in the kernel: it keeps slot 5.
  routes.hops = {{5, want.hops.at("g1")}};
  routes.slots = {5};
  p = planSteering(want, routes, nft);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->set_hops.empty());
  ASSERT_EQ(p->install.size(), 2u) << "the pod's mark changes: delete, then add";
  EXPECT_EQ(p->install[0].kind, K::kDelSteer);
  EXPECT_EQ(p->install[1].kind, K::kAddSteer);
  EXPECT_EQ(p->install[1].mark, markOfSlot(5));
  // pay moves to g2: a new slot, never the one g1's flows still use.
  const auto moved = steerView(cluster("w1", "g2"), tunnel());
  routes.hops = {{1, want.hops.at("g1")}};
  routes.slots = {1};
  p = planSteering(moved, routes, nft);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->add_slots, std::vector<int>{2});
  EXPECT_EQ(p->clear_hops.size(), 1u);
  EXPECT_EQ(p->clear_hops[0].first, 1);
}

TEST(PlanSteering, NoFreeSlotIsAnError) {
  const auto want = steerView(cluster("w1", "g1"), tunnel());
  ObservedRoutes routes;
  Hop other = want.hops.at("g1");
  for (int s = 1; s <= kMaxSlots; ++s) {
    other.via4 = IpAddress::v4(0x0a000000u + static_cast<uint32_t>(s));
    routes.hops[s] = other;
  }
  auto p = planSteering(want, routes, ObservedNft{});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ENOSPC);
}

// ---- the node's data path on the fakes ---------------------------------------------

struct Worker {
  FakeNft nft;
  FakeAddresses addrs;
  FakeAnnouncer announcer;
  FakeConntrack ct;
  FakeRoutes routes;
  KernelFaults faults;
  std::unique_ptr<NodeDataplane> dp = fresh();
  Worker() {
    nft.faults = &faults;
    routes.faults = &faults;
  }
  std::unique_ptr<NodeDataplane> fresh() {
    return std::make_unique<NodeDataplane>(Ports{nft, addrs, announcer, ct, &routes}, tunnel());
  }
  // Every local pod of every listed namespace is translated, steered to a
  // slot whose next hop exists, or held.
  void checkCovered(const DesiredState& d) {
    for (const auto& pod : d.self()->pod_ips) {
      const auto& s = nft.state;
      const bool held = s.pending.count(pod) > 0, mapped = s.snat.count(pod) > 0;
      auto it = s.steer.find(pod);
      const bool steered =
          it != s.steer.end() && routes.state.hops.count(static_cast<int>(it->second >> 16));
      EXPECT_TRUE(held || mapped || steered) << pod.str() << " is free to leave unmapped";
    }
  }
};

TEST(SteeringDataplane, APodIsNeverUnmappedWhileItsNamespaceMovesEvenWithCrashes) {
  const std::vector<DesiredState> states = {cluster("w1", "g1"), cluster("w1", ""),
                                            cluster("w1", "g2"), cluster("w1", "g1")};
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    Worker w;
    ASSERT_TRUE(w.dp->reconcile(states[0]));
    // From then on, between any two kernel operations, every local pod is
    // covered (all the states have the same pods).
    w.faults.after_each = [&] { w.checkCovered(states[0]); };
    for (size_t i = 1; i < states.size(); ++i) {
      w.faults.fail_after = static_cast<int>(rng() % 12);
      if (!w.dp->reconcile(states[i])) {
        w.faults.fail_after = -1;
        w.dp = w.fresh();  // a new agent after the crash
        ASSERT_TRUE(w.dp->reconcile(states[i]));
      }
      w.faults.fail_after = -1;
      // Converged: steered exactly where the state says.
      const auto v = steerView(states[i], tunnel());
      std::map<IpAddress, std::string> steered;
      for (const auto& [pod, mark] : w.nft.state.steer)
        for (const auto& [g, hop] : v.hops)
          if (w.routes.state.hops.count(static_cast<int>(mark >> 16)) &&
              w.routes.state.hops.at(static_cast<int>(mark >> 16)).via4 == hop.via4)
            steered[pod] = g;
      EXPECT_EQ(steered, v.steered) << "state " << i;
      EXPECT_EQ(w.nft.state.pending.count(ip("10.244.3.2")), v.steered.empty() ? 1u : 0u);
    }
  }
}

}  // namespace
}  // namespace nsegress::gateway
