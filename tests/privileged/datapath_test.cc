// The gateway agent as a process, in a lab: pods -> gateway -> outside host.
#include <signal.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "nsegress/gateway/metrics.h"
#include "nsegress/netlink/conntrack.h"
#include "nsegress/netlink/nft.h"
#include "privileged_test.h"

namespace nsegress::testing {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

class Datapath : public LabTest {
 protected:
  // Two annotated namespaces with IPs, one annotated namespace still pending.
  void standardLab() {
    lab->addPod("a1", "10.244.1.2");
    lab->addPod("a2", "10.244.1.3");
    lab->addPod("b1", "10.244.2.2");
    lab->addPod("c1", "10.244.3.2");
    lab->writeState(stateJson({{"team-a", "203.0.113.10", {"10.244.1.2", "10.244.1.3"}},
                               {"team-b", "203.0.113.11", {"10.244.2.2"}},
                               {"team-c", "", {"10.244.3.2"}}}));
    lab->startServers();
  }
  lab::Process& startAndWait() {
    auto& gw = lab->startGateway(lab->statePath());
    EXPECT_TRUE(lab::eventually([&] {
      return gw.log().find("reconciled in") != std::string::npos;
    })) << gw.log();
    return gw;
  }
  // The kernel table as it is. A dump that races the agent replacing the
  // table (a rebuild) can fail transiently, as the agent's own reads can (it
  // retries them too): retry briefly.
  gateway::ObservedNft kernel() {
    lab::NetnsEnter in(lab->gw());
    auto nft = netlink::NftTable::open({"nsegress", "up0"});
    auto obs = (*nft)->observe();
    for (int i = 0; i < 50 && !obs; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      obs = (*nft)->observe();
    }
    EXPECT_TRUE(obs) << obs.error().message;
    return obs ? *obs : gateway::ObservedNft{};
  }
  size_t flowsOf(const char* egress) {
    lab::NetnsEnter in(lab->gw());
    auto ct = netlink::Conntrack::open();
    auto c = (*ct)->countByEgress();
    return (*c)[ip(egress)];
  }
  std::set<std::string> allowedSources() {
    return {"203.0.113.10", "203.0.113.11", "198.51.100.1"};
  }
};

TEST_F(Datapath, EachNamespaceLeavesWithItsEgressIpAndNothingElse) {
  standardLab();
  startAndWait();
  for (const char* proto : {"udp", "tcp"}) {
    for (const char* pod : {"a1", "a2", "b1"}) {
      const std::string tag = std::string(proto) + "-" + pod;
      EXPECT_EQ(lab->send(pod, proto, tag, 5, 5, /*fresh=*/true), "sent 5 failed 0\n") << tag;
    }
  }
  for (const char* proto : {"udp", "tcp"}) {
    const std::string p(proto);
    EXPECT_EQ(lab->peersOf(p + "-a1"), std::set<std::string>{"203.0.113.10"});
    EXPECT_EQ(lab->peersOf(p + "-a2"), std::set<std::string>{"203.0.113.10"});
    EXPECT_EQ(lab->peersOf(p + "-b1"), std::set<std::string>{"203.0.113.11"});
  }
  // At packet level too: nothing reached the outside with any other source.
  for (const auto& [src, n] : lab->seenSources())
    EXPECT_TRUE(allowedSources().count(src)) << src << " leaked (" << n << " packets)";
  auto k = kernel();
  EXPECT_GT(k.counters["tx-team-a"].first, 0u);
  EXPECT_GT(k.counters["tx-team-b"].first, 0u);
}

TEST_F(Datapath, DualStackEachFamilyLeavesWithItsOwnEgressAddressOrIsDropped) {
  // team-d has an IPv4 and an IPv6 egress address; team-e only an IPv4 one,
  // so its pods' IPv6 traffic is fail-closed.
  lab->addPod("d1", "10.244.4.2", "fd00:10::2");
  lab->addPod("e1", "10.244.5.2", "fd00:10::3");
  DesiredState st;
  st.gateway = "gw";
  st.generation = 1;
  NamespaceEgress d{
      "team-d", ip("203.0.113.12"), ip("fd00:e::10"), {ip("10.244.4.2"), ip("fd00:10::2")}};
  NamespaceEgress e{
      "team-e", ip("203.0.113.13"), std::nullopt, {ip("10.244.5.2"), ip("fd00:10::3")}};
  st.namespaces = {d, e};
  lab->writeState(serializeDesiredState(st));
  lab->startServers();
  startAndWait();
  const std::string v6 = lab::Lab::kOutsideIp6;
  for (const char* proto : {"udp", "tcp"}) {
    const std::string p(proto);
    EXPECT_EQ(lab->send("d1", proto, p + "-d1-v6", 3, 5, true, 1000, v6), "sent 3 failed 0\n");
    EXPECT_EQ(lab->send("d1", proto, p + "-d1-v4", 3, 5, true), "sent 3 failed 0\n");
    lab->send("e1", proto, p + "-e1-v6", 2, 5, true, 300, v6);
    EXPECT_EQ(lab->send("e1", proto, p + "-e1-v4", 3, 5, true), "sent 3 failed 0\n");
    EXPECT_EQ(lab->peersOf(p + "-d1-v6"), std::set<std::string>{"fd00:e::10"}) << p;
    EXPECT_EQ(lab->peersOf(p + "-d1-v4"), std::set<std::string>{"203.0.113.12"}) << p;
    EXPECT_TRUE(lab->peersOf(p + "-e1-v6").empty()) << p << ": no IPv6 egress address: dropped";
    EXPECT_EQ(lab->peersOf(p + "-e1-v4"), std::set<std::string>{"203.0.113.13"}) << p;
  }
  for (const auto& [src, n] : lab->seenSources())
    EXPECT_TRUE(src == "fd00:e::10" || src == "203.0.113.12" || src == "203.0.113.13" ||
                src == "198.51.100.1" || src.rfind("fe80:", 0) == 0 || src == "fd00:ff::1")
        << src << " leaked (" << n << " packets)";
  auto k = kernel();
  EXPECT_GT(k.counters["drop-team-e"].first, 0u) << "the IPv6 drops are counted";
  EXPECT_NE(lab->exec(lab->gw(), "ip -6 addr show dev up0").find("fd00:e::10/128"),
            std::string::npos);

  // Release the IPv6 address: it leaves the uplink and team-d's IPv6 traffic
  // is dropped from then on (fail-closed), IPv4 unaffected.
  st.namespaces[0].egress_v6.reset();
  st.generation = 2;
  lab->writeState(serializeDesiredState(st));
  EXPECT_TRUE(lab::eventually([&] {
    return lab->exec(lab->gw(), "ip -6 addr show dev up0").find("fd00:e::10") == std::string::npos;
  }));
  lab->send("d1", "udp", "udp-d1-v6-after", 2, 5, true, 300, v6);
  EXPECT_TRUE(lab->peersOf("udp-d1-v6-after").empty());
  EXPECT_EQ(lab->send("d1", "udp", "udp-d1-v4-after", 2, 5, true), "sent 2 failed 0\n");
  EXPECT_EQ(lab->peersOf("udp-d1-v4-after"), std::set<std::string>{"203.0.113.12"});
}

TEST_F(Datapath, PendingNamespaceReachesNothingAndDropsAreCounted) {
  standardLab();
  startAndWait();
  lab->send("c1", "udp", "udp-c1", 5, 5, true);
  lab->send("c1", "tcp", "tcp-c1", 2, 5, true, /*timeout_ms=*/300);
  EXPECT_TRUE(lab->peersOf("udp-c1").empty());
  EXPECT_TRUE(lab->peersOf("tcp-c1").empty());
  EXPECT_FALSE(lab->seenSources().count("10.244.3.2"));
  auto k = kernel();
  EXPECT_GE(k.counters["drop-team-c"].first, 5u + 2u) << "5 datagrams + at least one SYN each";
  // Assigning the IP makes it live; the same pod now leaves with it.
  lab->writeState(stateJson({{"team-a", "203.0.113.10", {"10.244.1.2", "10.244.1.3"}},
                             {"team-b", "203.0.113.11", {"10.244.2.2"}},
                             {"team-c", "203.0.113.12", {"10.244.3.2"}}},
                            2));
  ASSERT_TRUE(lab::eventually([&] { return kernel().snat.count(ip("10.244.3.2")) == 1; }));
  EXPECT_EQ(lab->send("c1", "udp", "udp-c1-live", 3, 5, true), "sent 3 failed 0\n");
  EXPECT_EQ(lab->peersOf("udp-c1-live"), std::set<std::string>{"203.0.113.12"});
}

// Attribution by port (RFC 7422): each pod of a namespace whose pool gives
// port blocks leaves from its address and from ports of its own block only
// (TCP and UDP, IPv4 and IPv6), so address and port name the pod; ICMP
// leaves with the address; a pod without a block reaches nothing and is
// counted; a namespace without blocks shares its address's ports as before.
TEST_F(Datapath, PortBlocksEachPodLeavesFromItsOwnPortsOnly) {
  lab->addPod("p1", "10.244.1.2", "fd00:10::2");
  lab->addPod("p2", "10.244.1.3");
  lab->addPod("p3", "10.244.1.4");
  lab->addPod("b1", "10.244.2.2");
  DesiredState st;
  st.gateway = "gw";
  st.generation = 1;
  NamespaceEgress a{"team-a",
                    ip("203.0.113.10"),
                    ip("fd00:e::10"),
                    {ip("10.244.1.2"), ip("10.244.1.3"), ip("10.244.1.4"), ip("fd00:10::2")}};
  a.port_blocks_required = true;
  a.port_blocks = {{ip("203.0.113.10"), ip("10.244.1.2"), 1024, 1087},
                   {ip("203.0.113.10"), ip("10.244.1.3"), 1088, 1151},
                   {ip("fd00:e::10"), ip("fd00:10::2"), 2048, 2111}};
  NamespaceEgress b{"team-b", ip("203.0.113.11"), std::nullopt, {ip("10.244.2.2")}};
  st.namespaces = {a, b};
  lab->writeState(serializeDesiredState(st));
  lab->startServers();
  startAndWait();
  // The source ports the outside host saw (its lines are printed as they
  // arrive: waited for, on a slow machine), all in the block. Distinct ones:
  // `want` flows give `want` ports, or one or two fewer on a loaded machine
  // (under ASan one of twenty went missing twice in a row, cause not found:
  // a datagram lost or an ephemeral port picked again); what matters is
  // that every one seen is in the block.
  auto inBlock = [&](const std::string& tag, const std::string& peer, uint16_t lo, uint16_t hi,
                     size_t want) {
    lab::eventually([&] { return lab->portsOf(tag).size() >= want; }, std::chrono::seconds(3));
    const auto got = lab->portsOf(tag);
    EXPECT_FALSE(got.empty()) << tag;
    for (const auto& [p, port] : got) {
      EXPECT_EQ(p, peer) << tag;
      EXPECT_TRUE(port >= lo && port <= hi)
          << tag << ": port " << port << " outside " << lo << "-" << hi;
    }
    return got.size();
  };
  for (const char* proto : {"udp", "tcp"}) {
    const std::string p(proto);
    EXPECT_EQ(lab->send("p1", proto, p + "-p1", 20, 2, true), "sent 20 failed 0\n");
    EXPECT_EQ(lab->send("p2", proto, p + "-p2", 20, 2, true), "sent 20 failed 0\n");
    EXPECT_EQ(lab->send("p1", proto, p + "-p1-v6", 10, 2, true, 1000, lab::Lab::kOutsideIp6),
              "sent 10 failed 0\n");
    EXPECT_EQ(lab->send("b1", proto, p + "-b1", 5, 2, true), "sent 5 failed 0\n");
    // Twenty fresh sockets each: twenty source ports, all in the pod's block.
    EXPECT_GE(inBlock(p + "-p1", "203.0.113.10", 1024, 1087, 20), 18u);
    EXPECT_GE(inBlock(p + "-p2", "203.0.113.10", 1088, 1151, 20), 18u);
    EXPECT_GE(inBlock(p + "-p1-v6", "fd00:e::10", 2048, 2111, 10), 8u);
    EXPECT_EQ(lab->peersOf(p + "-b1"), std::set<std::string>{"203.0.113.11"});
    // A pod without a block: fail-closed.
    lab->send("p3", proto, p + "-p3", 3, 2, true, 300);
    EXPECT_TRUE(lab->peersOf(p + "-p3").empty()) << p;
  }
  EXPECT_FALSE(lab->seenSources().count("10.244.1.4"));
  auto k = kernel();
  EXPECT_GE(k.counters["drop-team-a"].first, 3u) << "the blockless pod's drops are counted";
  EXPECT_EQ(k.blocks.size(), 3u);
  EXPECT_EQ((k.blocks[ip("10.244.1.3")]), (gateway::BlockValue{ip("203.0.113.10"), 1088, 1151}));
  EXPECT_EQ((k.blocks[ip("fd00:10::2")]), (gateway::BlockValue{ip("fd00:e::10"), 2048, 2111}));
  // The census behind nsegress_gateway_port_block_usage_ratio: p1's flows
  // to its busiest destination (TCP or UDP to the outside host: 20 each,
  // TCP's still in TIME_WAIT, each holding a port of the block).
  {
    lab::NetnsEnter in(lab->gw());
    auto ct = netlink::Conntrack::open();
    ASSERT_TRUE(ct);
    auto c = (*ct)->census();
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_GE(c->busiest_destination[ip("10.244.1.2")], 20u);
    EXPECT_LE(c->busiest_destination[ip("10.244.1.2")], 64u) << "a block of 64 holds 64 at most";
    auto pressure = gateway::blockPressure(st, *c);
    EXPECT_GE(pressure["team-a"].ratio, 20.0 / 64) << "the fuller of p1's and p2's blocks";
    EXPECT_FALSE(pressure.count("team-b")) << "no port blocks: no pressure to report";
  }
  // ICMP has no port: it leaves with the namespace's address.
  const std::string ping = lab->send("p1", "icmp", "icmp-p1", 3, 5, true);
  EXPECT_NE(ping.find("replied 3"), std::string::npos) << ping;

  // p2's block moves (as when a pool's block size changes): new flows use
  // the new block; p3 gets one and is let out.
  st.namespaces[0].port_blocks[1] = {ip("203.0.113.10"), ip("10.244.1.3"), 1152, 1215};
  st.namespaces[0].port_blocks.push_back({ip("203.0.113.10"), ip("10.244.1.4"), 1216, 1279});
  st.generation = 2;
  lab->writeState(serializeDesiredState(st));
  ASSERT_TRUE(lab::eventually([&] { return kernel().blocks.size() == 4; }));
  EXPECT_EQ(lab->send("p2", "udp", "udp-p2-moved", 10, 2, true), "sent 10 failed 0\n");
  EXPECT_GE(inBlock("udp-p2-moved", "203.0.113.10", 1152, 1215, 10), 8u);
  EXPECT_EQ(lab->send("p3", "tcp", "tcp-p3-live", 5, 2, true), "sent 5 failed 0\n");
  EXPECT_GE(inBlock("tcp-p3-live", "203.0.113.10", 1216, 1279, 5), 3u);
}

// The flow log (pools without port blocks): each flow's NEW and DESTROY
// events of this node's egress addresses are recorded, and the question
// "which pod was behind ADDRESS:PORT at T" is answered from them — while
// the flow lives and after it is gone.
TEST_F(Datapath, FlowLogNamesThePodBehindAnAddressAndPort) {
  standardLab();
  const std::string dir = lab->dir() + "/flows";
  auto& gw = lab->startGateway(lab->statePath(), {"--flow-log", dir});
  ASSERT_TRUE(lab::eventually([&] { return gw.log().find("reconciled in") != std::string::npos; }))
      << gw.log();
  // The agent tells the flow log which addresses it hosts after its first
  // reconcile; a flow opened after that is recorded.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(lab->send("a1", "tcp", "t-a1", 3, 5, true), "sent 3 failed 0\n");
  EXPECT_EQ(lab->send("a2", "udp", "u-a2", 3, 5, true), "sent 3 failed 0\n");
  lab::eventually(
      [&] { return lab->portsOf("t-a1").size() >= 3 && lab->portsOf("u-a2").size() >= 3; });
  const auto a1 = lab->portsOf("t-a1");
  const auto a2 = lab->portsOf("u-a2");
  ASSERT_FALSE(a1.empty());
  ASSERT_FALSE(a2.empty());
  const long during = static_cast<long>(time(nullptr));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // written within a second
  auto who = [&](const std::string& addr, const std::string& extra = "") {
    std::string out;
    lab::run(lab::gatewayPath() + " --flow-log " + dir + " --who " + addr + extra, &out);
    return out;
  };
  for (const auto& [peer, port] : a1) {
    const std::string out = who(peer + ":" + std::to_string(port));
    auto j = nlohmann::json::parse(out);
    ASSERT_EQ(j["holders"].size(), 1u) << out;
    EXPECT_EQ(j["holders"][0]["podIP"], "10.244.1.2") << out;
    EXPECT_EQ(j["holders"][0]["namespace"], "team-a") << out;
    EXPECT_EQ(j["holders"][0]["protocol"], "tcp") << out;
    EXPECT_TRUE(j["complete"].get<bool>()) << out;
  }
  for (const auto& [peer, port] : a2) {
    auto j = nlohmann::json::parse(who(peer + ":" + std::to_string(port)));
    ASSERT_EQ(j["holders"].size(), 1u) << j.dump();
    EXPECT_EQ(j["holders"][0]["podIP"], "10.244.1.3");
    EXPECT_EQ(j["holders"][0]["protocol"], "udp");
  }
  // The namespace is released: its flows are flushed (DESTROY events). Now
  // nobody holds the port; asked about before, the pod still does.
  lab->writeState(
      stateJson({{"team-b", "203.0.113.11", {"10.244.2.2"}}, {"team-c", "", {"10.244.3.2"}}}, 2));
  ASSERT_TRUE(lab::eventually([&] { return kernel().snat.count(ip("10.244.1.3")) == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto& [peer, port] = *a2.begin();
  const std::string addr = peer + ":" + std::to_string(port);
  auto now = nlohmann::json::parse(who(addr));
  EXPECT_TRUE(now["holders"].empty()) << now.dump();
  auto then = nlohmann::json::parse(who(addr, " --at " + std::to_string(during + 1)));
  ASSERT_EQ(then["holders"].size(), 1u) << then.dump() << lab::must("cat " + dir + "/*.log");
  EXPECT_EQ(then["holders"][0]["podIP"], "10.244.1.3");
  EXPECT_NE(who(addr, " --to 192.0.2.99:1").find("\"holders\": []"), std::string::npos);
  // Bad questions: a clear error, status 2.
  std::string out;
  EXPECT_EQ(lab::run(lab::gatewayPath() + " --flow-log " + dir + " --who 203.0.113.10", &out), 2);
  EXPECT_EQ(lab::run(lab::gatewayPath() + " --who 203.0.113.10:80", &out), 2);
  EXPECT_EQ(
      lab::run(lab::gatewayPath() + " --flow-log " + dir + " --who 203.0.113.10:80 --at yesterday",
               &out),
      2);
  EXPECT_EQ(lab::run(lab::gatewayPath() + " --flow-log " + dir +
                         " --who 203.0.113.10:80 --at 1000000000 2>&1",
                     &out),
            1)
      << "cannot read the segment of that hour";
  EXPECT_NE(out.find("cannot read the segment of that hour"), std::string::npos) << out;
}

TEST_F(Datapath, ReleaseFlushesFlowsRemovesAddressAndOldIpNeverLeavesAgain) {
  standardLab();
  startAndWait();
  // Long-running streams of both namespaces: a persistent TCP connection each.
  auto& sa =
      lab->spawn(lab->pod("a1"),
                 {lab::labtoolPath(), "send", "--proto", "tcp", "--dst", "198.51.100.2", "--port",
                  "9001", "--tag", "stream-a", "--count", "400", "--interval-ms", "20"},
                 "stream-a.log");
  auto& sb =
      lab->spawn(lab->pod("b1"),
                 {lab::labtoolPath(), "send", "--proto", "tcp", "--dst", "198.51.100.2", "--port",
                  "9001", "--tag", "stream-b", "--count", "400", "--interval-ms", "20"},
                 "stream-b.log");
  ASSERT_TRUE(
      lab::eventually([&] { return flowsOf("203.0.113.10") > 0 && flowsOf("203.0.113.11") > 0; }));
  ASSERT_EQ(lab->peersOf("stream-a"), std::set<std::string>{"203.0.113.10"});

  lab->writeState(
      stateJson({{"team-b", "203.0.113.11", {"10.244.2.2"}}, {"team-c", "", {"10.244.3.2"}}}, 2));
  ASSERT_TRUE(lab::eventually([&] { return kernel().owned.count(ip("203.0.113.10")) == 0; }));
  // Same reconcile: elements, counters, address and flows are all gone.
  auto k = kernel();
  for (const char* pod : {"10.244.1.2", "10.244.1.3"}) {
    EXPECT_FALSE(k.snat.count(ip(pod)));
    EXPECT_FALSE(k.tx_counter.count(ip(pod)));
  }
  EXPECT_FALSE(k.counters.count("tx-team-a"));
  EXPECT_TRUE(k.flush_pending.empty());
  EXPECT_EQ(flowsOf("203.0.113.10"), 0u);
  EXPECT_EQ(lab->exec(lab->gw(), "ip -4 addr show dev up0").find("203.0.113.10"),
            std::string::npos);

  // From now on nothing leaves with the old address, while the stream goes on.
  lab->clearSeen();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto seen = lab->seenSources();
  EXPECT_FALSE(seen.count("203.0.113.10")) << "old IP still leaving: " << seen["203.0.113.10"];
  // The other namespace was not disturbed.
  EXPECT_GT(seen["203.0.113.11"], 0u);
  EXPECT_GT(flowsOf("203.0.113.11"), 0u);
  EXPECT_TRUE(sb.running());
  sa.signal(SIGKILL);
  sb.signal(SIGKILL);
}

TEST_F(Datapath, AgentRestartDuringStreamLosesNothingAndChangesNothing) {
  standardLab();
  auto& gw1 = startAndWait();
  // Every datagram opens a new flow, so every one needs the map to be live.
  auto& stream =
      lab->spawn(lab->pod("a1"),
                 {lab::labtoolPath(), "send", "--proto", "udp", "--dst", "198.51.100.2", "--port",
                  "9000", "--tag", "rs", "--count", "300", "--interval-ms", "10", "--fresh"},
                 "stream.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  gw1.signal(SIGKILL);  // the harshest restart
  gw1.wait();
  auto& gw2 = lab->startGateway(lab->statePath());
  ASSERT_EQ(stream.wait(), 0);
  ASSERT_TRUE(lab::eventually(
      [&] { return gw2.log().find("desired state generation") != std::string::npos; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  std::set<int> seqs;
  for (const auto& l : lab->serverLines()) {
    std::istringstream in(l);
    std::string proto, peer, tag;
    int seq;
    in >> proto >> peer >> tag >> seq;
    if (tag != "rs") continue;
    EXPECT_EQ(peer, "203.0.113.10") << l;
    seqs.insert(seq);
  }
  EXPECT_EQ(seqs.size(), 300u) << "datagrams lost across the restart";
  // The new agent adopted the table: it planned no change at all.
  EXPECT_EQ(gw2.log().find("reconciled in"), std::string::npos) << gw2.log();
}

TEST_F(Datapath, MalformedStateIsRejectedNamingTheFieldAndLastGoodStaysProgrammed) {
  standardLab();
  auto& gw = startAndWait();
  const auto before = kernel();
  lab->writeState(R"({"apiVersion":"nsegress.io/v1alpha1","kind":"GatewayDesiredState",
    "namespaces":[{"name":"team-a","egressIPs":["203.0.113.10"],"podIPs":["10.244.1.300"]}]})");
  ASSERT_TRUE(lab::eventually([&] {
    return gw.log().find("namespaces[0].podIPs[0]") != std::string::npos;
  })) << gw.log();
  lab->writeState("{ truncated");
  ASSERT_TRUE(
      lab::eventually([&] { return gw.log().find("not valid JSON") != std::string::npos; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a resync passes too
  const auto after = kernel();
  EXPECT_EQ(after.snat, before.snat);
  EXPECT_EQ(after.pending, before.pending);
  EXPECT_EQ(after.owned, before.owned);
  EXPECT_EQ(lab->send("a1", "udp", "still", 3, 5, true), "sent 3 failed 0\n");
  EXPECT_EQ(lab->peersOf("still"), std::set<std::string>{"203.0.113.10"});
  EXPECT_TRUE(gw.running());
}

TEST_F(Datapath, DriftIsRepairedAndCleanupRemovesEverything) {
  standardLab();
  auto& gw = startAndWait();
  // Someone deletes our SNAT rules and an element by hand.
  lab->exec(lab->gw(), "nft flush chain inet nsegress postrouting");
  lab->exec(lab->gw(), "nft delete element inet nsegress pending4 '{ 10.244.3.2 }'");
  ASSERT_TRUE(lab::eventually([&] {
    auto k = kernel();
    return k.structure_ok && k.pending.count(ip("10.244.3.2")) == 1;
  })) << gw.log();
  EXPECT_EQ(lab->send("a1", "udp", "healed", 2, 5, true), "sent 2 failed 0\n");
  EXPECT_EQ(lab->peersOf("healed"), std::set<std::string>{"203.0.113.10"});

  gw.signal(SIGTERM);
  EXPECT_EQ(gw.wait(), 0);
  lab->exec(lab->gw(), lab::gatewayPath() + " --uplink up0 --cleanup");
  EXPECT_FALSE(kernel().table_present);
  const auto addrs = lab->exec(lab->gw(), "ip -4 addr show dev up0");
  EXPECT_EQ(addrs.find("203.0.113."), std::string::npos) << addrs;
  EXPECT_NE(addrs.find("198.51.100.1"), std::string::npos) << "the node's own address stays";
}

}  // namespace
}  // namespace nsegress::testing

namespace nsegress::testing {
namespace {

// An egress address identifies one namespace: a pod that forges another
// pod's source address, or a made-up one, is dropped (strict reverse path)
// and counted; nothing leaves as the victim's egress address or untranslated.
TEST_F(Datapath, APodForgingAnotherPodsAddressOrAMadeUpOneIsDroppedAndCounted) {
  lab->addPod("victim", "10.244.6.2", "fd00:10::6");
  lab->addPod("forger", "10.244.7.2", "fd00:10::7");
  DesiredState st;
  st.gateway = "gw";
  st.generation = 1;
  st.namespaces = {
      NamespaceEgress{
          "pay", ip("203.0.113.14"), ip("fd00:e::14"), {ip("10.244.6.2"), ip("fd00:10::6")}},
      NamespaceEgress{
          "web", ip("203.0.113.15"), ip("fd00:e::15"), {ip("10.244.7.2"), ip("fd00:10::7")}}};
  lab->writeState(serializeDesiredState(st));
  lab->startServers();
  startAndWait();
  const std::string v6 = lab::Lab::kOutsideIp6;
  // The forger, as the victim (IPv4 and IPv6) and as nobody at all. The
  // packets do leave the forger (its sends succeed); the gateway drops them.
  auto forge = [&](const std::string& proto, const std::string& tag, const std::string& dst,
                   const std::string& src) {
    return lab->send("forger", proto, tag, 5, 5, true, 300, dst, src);
  };
  EXPECT_EQ(forge("udp", "forged-v4", "", "10.244.6.2"), "sent 5 failed 0\n");
  EXPECT_EQ(forge("udp", "forged-v6", v6, "fd00:10::6"), "sent 5 failed 0\n");
  EXPECT_EQ(forge("udp", "madeup-v4", "", "10.99.0.1"), "sent 5 failed 0\n");
  EXPECT_EQ(forge("udp", "madeup-v6", v6, "fd00:99::1"), "sent 5 failed 0\n");
  forge("tcp", "forged-tcp", "", "10.244.6.2");  // the handshake never completes
  // Both still leave as themselves.
  EXPECT_EQ(lab->send("victim", "udp", "real-victim", 3, 5, true), "sent 3 failed 0\n");
  EXPECT_EQ(lab->send("forger", "udp", "real-forger", 3, 5, true, 1000, v6), "sent 3 failed 0\n");
  EXPECT_TRUE(lab::eventually([&] {
    return lab->peersOf("real-victim") == std::set<std::string>{"203.0.113.14"} &&
           lab->peersOf("real-forger") == std::set<std::string>{"fd00:e::15"};
  }));
  for (const char* tag : {"forged-v4", "forged-v6", "madeup-v4", "madeup-v6", "forged-tcp"})
    EXPECT_TRUE(lab->peersOf(tag).empty()) << tag << " reached the outside";
  for (const auto& [src, n] : lab->seenSources())
    EXPECT_TRUE(src == "203.0.113.14" || src == "fd00:e::15" || src == "198.51.100.1" ||
                src == "fd00:ff::1" || src.rfind("fe80:", 0) == 0)
        << src << " leaked (" << n << ")";
  EXPECT_GE(kernel().counters[gateway::kSpoofedCounter].first, 20u)
      << "every forged packet is counted";
}

// The egress addresses accept replies only: a new connection from outside to
// a node service through an egress address is dropped and counted, while the
// node's own address and the pods' replies are untouched.
TEST_F(Datapath, EgressAddressesAcceptRepliesOnlyNotNewInboundConnections) {
  lab->addPod("p1", "10.244.8.2", "fd00:10::8");
  DesiredState st;
  st.gateway = "gw";
  st.generation = 1;
  st.namespaces = {NamespaceEgress{
      "pay", ip("203.0.113.16"), ip("fd00:e::16"), {ip("10.244.8.2"), ip("fd00:10::8")}}};
  lab->writeState(serializeDesiredState(st));
  lab->startServers();
  auto& gw1 = startAndWait();
  // A node service on every address of the gateway (like a metrics port
  // under hostNetwork).
  lab->spawn(lab->gw(), {lab::labtoolPath(), "serve", "--udp-port", "9100", "--tcp-port", "9101"},
             "node-service.log");
  auto fromOutside = [&](const std::string& dst, const std::string& proto) {
    return lab->exec(lab->outside(), lab::labtoolPath() + " send --proto " + proto + " --dst " +
                                         dst + " --port " + (proto == "udp" ? "9100" : "9101") +
                                         " --tag in --count 2 --interval-ms 5 "
                                         "--connect-timeout-ms 300 --fresh");
  };
  EXPECT_TRUE(lab::eventually([&] {
    return fromOutside(lab::Lab::kGwUplinkIp, "tcp") == "sent 2 failed 0\n";
  })) << "the node's own address still serves";
  EXPECT_EQ(fromOutside("203.0.113.16", "tcp"), "sent 0 failed 2\n");
  EXPECT_EQ(fromOutside("fd00:e::16", "tcp"), "sent 0 failed 2\n");
  fromOutside("203.0.113.16", "udp");
  // Replies to the pods' own connections still come back through them.
  EXPECT_EQ(lab->send("p1", "tcp", "pod-v4", 3, 5, true), "sent 3 failed 0\n");
  EXPECT_EQ(lab->send("p1", "tcp", "pod-v6", 3, 5, true, 1000, lab::Lab::kOutsideIp6),
            "sent 3 failed 0\n");
  EXPECT_EQ(lab->peersOf("pod-v4"), std::set<std::string>{"203.0.113.16"});
  EXPECT_EQ(lab->peersOf("pod-v6"), std::set<std::string>{"fd00:e::16"});
  EXPECT_GE(kernel().counters[gateway::kInboundCounter].first, 4u);

  // Configured otherwise: the agent that replaces this one opens them (its
  // table is rebuilt, the mappings carried over).
  gw1.signal(SIGTERM);
  gw1.wait();
  auto& gw2 = lab->startGateway(lab->statePath(), {"--egress-accepts-inbound"});
  ASSERT_TRUE(lab::eventually([&] { return gw2.log().find("reconciled in") != std::string::npos; }))
      << gw2.log();
  EXPECT_TRUE(lab::eventually([&] {
    return fromOutside("203.0.113.16", "tcp") == "sent 2 failed 0\n";
  })) << "accepted when configured";
  EXPECT_EQ(lab->send("p1", "tcp", "pod-v4-again", 3, 5, true), "sent 3 failed 0\n");
  EXPECT_EQ(lab->peersOf("pod-v4-again"), std::set<std::string>{"203.0.113.16"});
}

}  // namespace
}  // namespace nsegress::testing
