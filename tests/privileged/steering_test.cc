// Steering from every node, in the cluster lab (tests/lab/lab.h): two gateway
// nodes, two workers, pods of three namespaces spread over all four, a CNI
// that masquerades pod traffic on every node, the standalone controller and
// one agent per node. Everything is judged by what the outside host sees and
// by the nodes' own drop counters.
#include <signal.h>

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lab.h"
#include "nsegress/gateway/steer_provider.h"
#include "nsegress/netlink/conntrack.h"
#include "nsegress/netlink/nft.h"

namespace nsegress::lab {
// gtest prints parameters with this (the test names say it too).
inline void PrintTo(const ClusterOptions& o, std::ostream* os) {
  *os << (o.tunnel ? "tunnel" : "l2") << "/" << o.iptables;
}
}  // namespace nsegress::lab

namespace nsegress::testing {
namespace {

using lab::ClusterOptions;

struct PodSpec {
  const char* name;
  const char* ns;
  const char* node;
  const char* ip;
  const char* ip6;
};

// pay: IPv4 pool; six: IPv6 pool; plain: not annotated; wait: asks for a
// pool that does not exist (Pending, fail-closed everywhere).
constexpr PodSpec kPods[] = {
    {"pay-g1", "pay", "gw1", "10.244.1.2", "fd00:244:1::2"},
    {"pay-g2", "pay", "gw2", "10.244.2.2", "fd00:244:2::2"},
    {"pay-w1", "pay", "w1", "10.244.3.2", "fd00:244:3::2"},
    {"pay-w2", "pay", "w2", "10.244.4.2", "fd00:244:4::2"},
    {"six-g1", "six", "gw1", "10.244.1.3", "fd00:244:1::3"},
    {"six-w1", "six", "w1", "10.244.3.3", "fd00:244:3::3"},
    {"six-w2", "six", "w2", "10.244.4.3", "fd00:244:4::3"},
    {"plain-w1", "plain", "w1", "10.244.3.4", "fd00:244:3::4"},
    {"plain-g2", "plain", "gw2", "10.244.2.4", "fd00:244:2::4"},
    {"wait-w1", "wait", "w1", "10.244.3.5", "fd00:244:3::5"},
};

std::string pools() {
  return R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: dmz}
spec:
  addresses: ["203.0.113.10-203.0.113.19"]
  nodeSelector: {matchLabels: {nsegress.io/gateway: "true"}}
---
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: dmz6}
spec:
  addresses: ["fd00:e::10-fd00:e::1f"]
  nodeSelector: {matchLabels: {nsegress.io/gateway: "true"}}
)";
}

std::string workloads() {
  std::string out =
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: pay, annotations: {nsegress.io/pool: "
      "dmz}}\n---\n"
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: six, annotations: {nsegress.io/pool: "
      "dmz6}}\n---\n"
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n---\n"
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: wait, annotations: {nsegress.io/pool: "
      "nosuch}}\n";
  for (const auto& p : kPods)
    out += std::string("---\napiVersion: v1\nkind: Pod\nmetadata: {name: ") + p.name +
           ", namespace: " + p.ns + "}\nspec: {nodeName: " + p.node +
           "}\nstatus: {phase: Running, podIPs: [{ip: " + p.ip + "}, {ip: \"" + p.ip6 + "\"}]}\n";
  return out;
}

class Steering : public ::testing::TestWithParam<ClusterOptions> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: creates network namespaces";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string tag = std::string(GetParam().tunnel ? "t" : "l") + info->name();
    tag = tag.substr(0, 10);
    for (auto& c : tag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lab = std::make_unique<lab::Lab>(tag, GetParam());
    for (const auto& p : kPods) lab->addPodOn(p.node, p.name, p.ip, p.ip6);
    lab->writeManifest("00-nodes.yaml", lab::Lab::nodeManifests());
    lab->writeManifest("10-pools.yaml", pools());
    lab->writeManifest("20-workloads.yaml", workloads());
    lab->startServers();
    lab->startController();
    for (const char* n : lab::Lab::kNodes) agents[n] = &lab->startNodeAgent(n);
    // Ready when the pods of each annotated namespace, on every node, leave
    // with its address.
    ASSERT_TRUE(lab::eventually(
        [&] {
          return !egress("pay", Family::V4).empty() && !egress("six", Family::V6).empty() &&
                 reaches("pay-w2", "udp", "", egress("pay", Family::V4)) &&
                 reaches("six-w1", "udp", fd6(), egress("six", Family::V6)) &&
                 reaches("pay-g1", "udp", "", egress("pay", Family::V4)) &&
                 reaches("pay-g2", "udp", "", egress("pay", Family::V4));
        },
        std::chrono::seconds(30)))
        << logs();
    // Until each agent's first reconcile, pods leave as the CNI sends them
    // (a known gap, docs/install.md): the tests judge what happens after.
    probe_ = "probe";
  }
  void TearDown() override {
    // Debugging: NSEGRESS_KEEP_LAB=<seconds> keeps a failed test's lab.
    if (const char* keep = std::getenv("NSEGRESS_KEEP_LAB"); keep && HasFailure())
      std::this_thread::sleep_for(std::chrono::seconds(std::atoi(keep)));
    lab.reset();
  }

  static std::string fd6() { return lab::Lab::kOutsideIp6; }

  nlohmann::json stateOf(const std::string& node) {
    std::ifstream in(lab->nodeStatePath(node));
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      return nlohmann::json::parse(ss.str());
    } catch (...) {
      return {};
    }
  }
  // The node hosting a namespace's address of a family ("" if none).
  std::string gatewayOf(const std::string& ns, Family f) {
    auto s = stateOf("w1");
    if (!s.contains("namespaces")) return "";
    for (const auto& n : s["namespaces"]) {
      const char* key = f == Family::V4 ? "gatewayV4" : "gatewayV6";
      if (n["name"] == ns && n.contains(key)) return n[key];
    }
    return "";
  }
  std::string egress(const std::string& ns, Family f) {
    const std::string g = gatewayOf(ns, f);
    if (g.empty()) return "";
    auto s = stateOf(g);
    for (const auto& n : s["namespaces"])
      if (n["name"] == ns)
        for (const auto& e : n["egressIPs"]) {
          const std::string a = e;
          if ((a.find(':') == std::string::npos) == (f == Family::V4)) return a;
        }
    return "";
  }
  // Sends one message; true when the outside host saw it from `want` only.
  bool reaches(const std::string& pod, const std::string& proto, const std::string& dst,
               const std::string& want) {
    const std::string tag = probe_ + "-" + pod + "-" + proto + std::to_string(++probes_);
    lab->send(pod, proto, tag, 1, 1, true, 300, dst);
    auto peers = lab->peersOf(tag);
    return peers == std::set<std::string>{want};
  }
  gateway::ObservedNft kernel(const std::string& node) {
    lab::NetnsEnter in(lab->node(node));
    netlink::NftConfig c;
    c.uplink = "eth0";
    auto nft = netlink::NftTable::open(c);
    auto obs = (*nft)->observe();
    for (int i = 0; i < 50 && !obs; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      obs = (*nft)->observe();
    }
    EXPECT_TRUE(obs) << obs.error().message;
    return obs ? *obs : gateway::ObservedNft{};
  }
  uint64_t counter(const std::string& node, const std::string& name) {
    return kernel(node).counters[name].first;
  }
  std::string logs() {
    std::string out;
    for (auto& [n, p] : agents) out += "--- agent " + n + "\n" + p->log();
    return out;
  }
  // What steering owns in a node's kernel, as text (no counters).
  std::string snapshot(const std::string& node) {
    const std::string n = lab->node(node);
    std::string out;
    // (Only what steering owns: the kernel's own IPv6 link-local routes of
    // the pods' interfaces come and go with duplicate address detection.)
    for (const char* cmd :
         {"nft -s list table inet nsegress", "ip rule", "ip -6 rule", "ip nexthop",
          "sh -c 'ip -4 route show table all; ip -6 route show table all' | grep 'table 4[2-9]'",
          "ip -d link show nsegress0", "ip addr show dev nsegress0",
          "bridge fdb show dev nsegress0", "ip neigh show dev nsegress0"}) {
      std::string o;
      lab::run("ip netns exec " + n + " " + cmd, &o);
      out += std::string("$ ") + cmd + "\n" + o;
    }
    return out;
  }

  std::unique_ptr<lab::Lab> lab;
  std::map<std::string, lab::Process*> agents;
  int probes_ = 0;
  std::string probe_ = "setup";
};

// Every pod of each annotated namespace, on every node, leaves with its
// namespace's address (TCP, UDP, ICMP; IPv4 and IPv6), and the replies come
// back; pods of the unannotated namespace are still masqueraded by their
// node (nsegress leaves them alone); a family without an address is held.
TEST_P(Steering, EveryPodOnEveryNodeLeavesWithItsNamespaceAddress) {
  const std::string pay = egress("pay", Family::V4), six = egress("six", Family::V6);
  for (const auto& p : kPods) {
    const std::string ns = p.ns;
    for (const char* proto : {"udp", "tcp", "icmp"}) {
      for (Family f : {Family::V4, Family::V6}) {
        const bool v4 = f == Family::V4;
        const std::string tag = std::string(p.name) + "-" + proto + (v4 ? "-4" : "-6");
        std::string want;
        if (ns == "pay" && v4) want = pay;
        if (ns == "six" && !v4) want = six;
        if (ns == "plain")
          want = v4 ? (std::string(p.node) == "w1" ? "192.0.2.13" : "198.51.100.12")
                    : (std::string(p.node) == "w1" ? "fd00:c::13" : "fd00:ff::12");
        lab->clearSeen();
        // (A held message is waited for briefly: it never comes.)
        const std::string out = lab->send(p.name, proto, tag, want.empty() ? 1 : 3, 5, true,
                                          want.empty() ? 300 : 1000, v4 ? "" : fd6(), "", 0, true);
        const auto seen = lab->seenSources();
        std::set<std::string> sources;
        for (const auto& [a, n] : seen) sources.insert(a);
        if (want.empty()) {
          // No address of this family: nothing reaches the outside host.
          EXPECT_TRUE(sources.empty()) << tag << " leaked as " << *sources.begin();
          EXPECT_NE(out.find("replied 0"), std::string::npos) << tag << ": " << out;
          continue;
        }
        EXPECT_EQ(sources, std::set<std::string>{want}) << tag;
        EXPECT_NE(out.find("replied 3"), std::string::npos) << tag << ": " << out;
      }
    }
  }
  // Held pods are counted per namespace, on the node they run on.
  EXPECT_GT(counter("w1", "drop-wait"), 0u);
  EXPECT_GT(counter("w2", "drop-pay"), 0u) << "pay has no IPv6 address: held on w2";
  EXPECT_EQ(counter("w1", "tx-pay"), 0u) << "workers translate nothing";
}

// Through the tunnel, a 1400-byte ICMP and UDP payload and a bulk TCP
// transfer pass (the tunnel MTU is the underlay's minus 50; TCP SYNs of
// steered flows are clamped).
TEST_P(Steering, LargePacketsAndBulkTcpPass) {
  // Warm the paths (neighbour resolution may hold a first packet).
  lab->send("pay-w1", "udp", "warm", 1, 1, true, 500, "", "", 0, true);
  lab->send("six-w2", "udp", "warm6", 1, 1, true, 500, fd6(), "", 0, true);
  for (const char* proto : {"udp", "icmp"}) {
    const std::string out = lab->send("pay-w1", proto, std::string("big-") + proto, 5, 5, true,
                                      1000, "", "", 1400, true);
    EXPECT_NE(out.find("replied 5"), std::string::npos) << proto << ": " << out;
  }
  const std::string out6 =
      lab->send("six-w2", "udp", "big6", 5, 5, true, 1000, fd6(), "", 1400, true);
  EXPECT_NE(out6.find("replied 5"), std::string::npos) << out6;
  const uint64_t bytes = 8 << 20;
  EXPECT_NE(lab->bulk("pay-w2", lab::Lab::kOutsideIp, bytes)
                .find("confirmed " + std::to_string(bytes) + " of"),
            std::string::npos);
  EXPECT_NE(lab->bulk("six-w1", fd6(), bytes).find("confirmed " + std::to_string(bytes) + " of"),
            std::string::npos);
  std::set<std::string> bulk_peers;
  for (const auto& l : lab->serverLines())
    if (l.rfind("bulk ", 0) == 0) bulk_peers.insert(l.substr(5, l.find(' ', 5) - 5));
  EXPECT_EQ(bulk_peers,
            (std::set<std::string>{egress("pay", Family::V4), egress("six", Family::V6)}));
}

// A gateway accepts a steered packet only if its inner source is a pod of
// the node that sent it; tunnel packets from anything but a node are
// dropped; a pod address arriving on a dedicated uplink is dropped. Each
// drop is counted, and each case has a control that passes.
TEST_P(Steering, SpoofingAcrossNodesIsDropped) {
  const std::string gw = gatewayOf("pay", Family::V4);
  const std::string gw_ip = lab::Lab::nodeIp(gw);
  const std::string pay = egress("pay", Family::V4);
  auto vxlan = [&](const std::string& from_ns, const std::string& inner_src, const std::string& tag,
                   const std::string& from = "") {
    lab->exec(from_ns, lab::labtoolPath() + " vxlan --to " + gw_ip + " --port 4793 --vni " +
                           std::to_string(0x4e5347) + " --dst-mac " + gateway::tunnelMac(gw) +
                           " --inner-src " + inner_src + " --inner-dst " + lab::Lab::kOutsideIp +
                           " --tag " + tag + " --count 5" +
                           (from.empty() ? "" : " --from " + from));
  };
  if (GetParam().tunnel) {
    // Control: w1 sending as its own pod is accepted (the hand-made packet
    // is right in every other respect).
    vxlan(lab->node("w1"), "10.244.3.2", "control");
    EXPECT_TRUE(lab::eventually([&] { return lab->peersOf("control") == std::set{pay}; }))
        << "the hand-made steered packet should pass";
    // w1 sending as w2's pod: dropped and counted.
    const uint64_t before = counter(gw, gateway::kSteerSpoofedCounter);
    vxlan(lab->node("w1"), "10.244.4.2", "forged");
    EXPECT_TRUE(
        lab::eventually([&] { return counter(gw, gateway::kSteerSpoofedCounter) >= before + 5; }));
    // A host that is not a node of the cluster (on the nodes' network).
    const uint64_t foreign = counter(gw, gateway::kTunnelForeignCounter);
    vxlan(lab->outside(), "10.244.3.2", "foreign", "192.0.2.1");
    EXPECT_TRUE(lab::eventually(
        [&] { return counter(gw, gateway::kTunnelForeignCounter) >= foreign + 5; }));
    // The outside world forging a node's address on the gateway's uplink.
    const uint64_t up_node = counter(gw, gateway::kUplinkSpoofedCounter);
    lab->exec(lab->outside(),
              lab::labtoolPath() + " vxlan --to " +
                  (gw == "gw1" ? std::string("198.51.100.11") : std::string("198.51.100.12")) +
                  " --port 4793 --vni " + std::to_string(0x4e5347) + " --dst-mac " +
                  gateway::tunnelMac(gw) + " --inner-src 10.244.3.2 --inner-dst " +
                  lab::Lab::kOutsideIp + " --tag uplinkforged --count 5 --from 192.0.2.13");
    EXPECT_TRUE(lab::eventually(
        [&] { return counter(gw, gateway::kUplinkSpoofedCounter) >= up_node + 5; }));
    // A node opening flows through the tunnel to another node's steered pod
    // (only replies of that pod's steered flows may come that way).
    const uint64_t w1_spoofed = counter("w1", gateway::kSteerSpoofedCounter);
    lab->exec(lab->node("w2"), lab::labtoolPath() + " vxlan --to 192.0.2.13 --port 4793 --vni " +
                                   std::to_string(0x4e5347) + " --dst-mac " +
                                   gateway::tunnelMac("w1") +
                                   " --inner-src 10.244.1.2 --inner-dst 10.244.3.2 --tag "
                                   "intopod --count 5");
    EXPECT_TRUE(lab::eventually(
        [&] { return counter("w1", gateway::kSteerSpoofedCounter) >= w1_spoofed + 5; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE(lab->peersOf("forged").empty());
    EXPECT_TRUE(lab->peersOf("foreign").empty());
    EXPECT_TRUE(lab->peersOf("uplinkforged").empty());
  }
  // The outside world sending with a pod's address to a gateway's uplink.
  const uint64_t up = counter("gw1", gateway::kUplinkSpoofedCounter);
  lab->exec(lab->outside(), lab::labtoolPath() +
                                " send --proto udp --dst 198.51.100.11 --port 9000 --src "
                                "10.244.3.2 --count 5 --tag fromoutside");
  EXPECT_TRUE(
      lab::eventually([&] { return counter("gw1", gateway::kUplinkSpoofedCounter) >= up + 5; }));
}

// Moving a namespace's address to the other gateway (the first loses its
// gateway label) moves its new flows there; a flow established before
// either finishes or is cut, and nothing of the namespace ever leaves with
// another source.
TEST_P(Steering, PlacementChangeMovesNewFlows) {
  const std::string pay = egress("pay", Family::V4);
  const std::string from = gatewayOf("pay", Family::V4);
  const std::string to = from == "gw1" ? "gw2" : "gw1";
  auto& stream =
      lab->spawn(lab->pod("pay-w1"),
                 {lab::labtoolPath(), "send", "--proto", "tcp", "--dst", lab::Lab::kOutsideIp,
                  "--port", "9001", "--tag", "long", "--count", "150", "--interval-ms", "20"},
                 "long.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // The gateway loses its label: the controller moves the address.
  std::string nodes = lab::Lab::nodeManifests();
  const std::string label = "  labels: {nsegress.io/gateway: \"true\"}\n";
  const auto at = nodes.find("name: " + from + "\n");
  nodes.erase(nodes.find(label, at), label.size());
  lab->writeManifest("00-nodes.yaml", nodes);
  ASSERT_TRUE(lab::eventually([&] { return gatewayOf("pay", Family::V4) == to; },
                              std::chrono::seconds(15)));
  EXPECT_EQ(egress("pay", Family::V4), pay) << "the address moves, it does not change";
  // New flows of every pod of the namespace, on every node, leave from the
  // new gateway with the same address (its conntrack has them).
  auto viaNewGateway = [&](const PodSpec& p) {
    std::string out;
    lab::run("ip netns exec " + lab->node(to) + " conntrack -L -p udp -s " + p.ip, &out);
    return out.find("dst=" + pay) != std::string::npos;
  };
  for (const auto& p : kPods) {
    if (std::string(p.ns) != "pay") continue;
    EXPECT_TRUE(lab::eventually([&] { return reaches(p.name, "udp", "", pay) && viaNewGateway(p); },
                                std::chrono::seconds(15)))
        << p.name << "\n"
        << logs();
  }
  stream.wait();
  for (const char* tag : {"long", "probe"})
    for (const auto& peer : lab->peersOf(tag)) EXPECT_EQ(peer, pay) << tag;
  for (const auto& l : lab->serverLines()) {
    if (l.find(" probe-pay") != std::string::npos || l.find(" long ") != std::string::npos) {
      EXPECT_NE(l.find(" " + pay + " "), std::string::npos) << l;
    }
  }
}

// An agent restart on any node adopts the kernel state as it is: zero
// changes (same tunnel device, rules, next hops, routes, table).
TEST_P(Steering, AgentRestartChangesNothing) {
  for (const char* node : {"w1", "gw1"}) {
    const std::string before = snapshot(node);
    agents[node]->signal(SIGKILL);
    agents[node]->wait();
    agents[node] = &lab->startNodeAgent(node);
    ASSERT_TRUE(lab::eventually([&] {
      return agents[node]->log().find("desired state generation") != std::string::npos;
    })) << agents[node]->log();
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // and two full resyncs
    EXPECT_EQ(snapshot(node), before) << node;
    // Nothing was changed: no reconcile reported an operation.
    EXPECT_EQ(agents[node]->log().find("reconciled in"), std::string::npos) << agents[node]->log();
  }
  EXPECT_TRUE(reaches("pay-w1", "tcp", "", egress("pay", Family::V4)));
}

// `--cleanup` on a node removes everything steering put there (and the
// table): the tunnel, the rules, the tables' routes, the next hops.
TEST_P(Steering, CleanupRemovesEverySteeringObject) {
  for (const char* node : {"w1", "gw1"}) {
    agents[node]->signal(SIGKILL);
    agents[node]->wait();
    lab->exec(lab->node(node), lab::gatewayPath() + " --uplink eth0 --cleanup");
    const std::string n = lab->node(node);
    std::string out;
    lab::run("ip netns exec " + n +
                 " sh -c 'ip rule; ip -6 rule; ip nexthop; ip -4 route show table all; "
                 "ip -6 route show table all; ip link show; nft list tables'",
             &out);
    EXPECT_EQ(out.find("4200"), std::string::npos) << node << ":\n" << out;
    EXPECT_EQ(out.find("nsegress"), std::string::npos) << node << ":\n" << out;
  }
}

INSTANTIATE_TEST_SUITE_P(Underlays, Steering,
                         ::testing::Values(ClusterOptions{true, "iptables-nft"},
                                           ClusterOptions{false, "iptables-legacy"}),
                         [](const auto& info) {
                           return std::string(info.param.tunnel ? "Tunnel" : "L2") +
                                  (info.param.iptables == "iptables-nft" ? "IptablesNft"
                                                                         : "IptablesLegacy");
                         });

}  // namespace
}  // namespace nsegress::testing
