// Failover in the cluster lab (issue 12): two gateways, two workers, the
// standalone controller as lease server, every agent with --peer-key.
// A pod on a worker sends a UDP probe every 10 ms (a new flow each, as a
// client reconnecting would); the owner of its namespace's address dies.
// Checked: the probe reaches the outside host again within the bound, only
// ever with the namespace's address; the outside router's neighbour entry
// (kept for hours, as the switches of ovn-kubernetes#6553 did) follows the
// move by gratuitous ARP; the fence of a killed agent's node closes by
// itself; the ledger records the move.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "lab.h"

namespace nsegress::testing {
namespace {

class Failover : public ::testing::Test {
 public:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: creates network namespaces";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string tag = std::string("f") + info->name();
    tag = tag.substr(0, 10);
    for (auto& c : tag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lab = std::make_unique<lab::Lab>(tag, lab::ClusterOptions{});
    lab->addPodOn("w1", "pay-w1", "10.244.3.2", "fd00:244:3::2");
    lab->addPodOn("w2", "pay-w2", "10.244.4.2", "fd00:244:4::2");
    key = lab->prepareFailover({{"pay-w1", "w1", "10.244.3.2"}, {"pay-w2", "w2", "10.244.4.2"}});
    lab->startServers();
    lab->startController({"--lease-listen", "192.0.2.1:4795", "--peer-key", key});
    for (const char* n : lab::Lab::kNodes) agents[n] = &startAgent(n);
    ASSERT_TRUE(lab::eventually(
        [&] {
          egress = egressOf("w1");
          owner = ownerOf("w1");
          return !egress.empty() && !owner.empty() && reaches("pay-w1") && reaches("pay-w2");
        },
        std::chrono::seconds(30)))
        << logs();
    standby = owner == "gw1" ? "gw2" : "gw1";
  }
  void TearDown() override {
    if (std::getenv("NSEGRESS_PRINT_LOGS")) std::cout << logs();
    if (const char* keep = std::getenv("NSEGRESS_KEEP_LAB"); keep && HasFailure())
      std::this_thread::sleep_for(std::chrono::seconds(std::atoi(keep)));
    lab.reset();
  }

  virtual std::vector<std::string> agentExtra() const { return {}; }
  lab::Process& startAgent(const std::string& n) {
    std::vector<std::string> args = {"--node-name",   n, "--peer-key", key, "--lease-server",
                                     "192.0.2.1:4795"};
    for (const auto& a : agentExtra()) args.push_back(a);
    return lab->startNodeAgent(n, args);
  }
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
  std::string egressOf(const std::string& node) {
    auto s = stateOf(node);
    if (!s.contains("addresses") || s["addresses"].empty()) return "";
    return s["addresses"][0]["ip"].get<std::string>();
  }
  std::string ownerOf(const std::string& node) {
    auto s = stateOf(node);
    if (!s.contains("addresses") || s["addresses"].empty() || !s["addresses"][0].contains("owner"))
      return "";
    return s["addresses"][0]["owner"].get<std::string>();
  }
  bool reaches(const std::string& pod) {
    const std::string tag = "ready-" + pod + std::to_string(n_++);
    lab->send(pod, "udp", tag, 1, 1, true, 300);
    auto peers = lab->peersOf(tag);
    return peers == std::set<std::string>{egress};
  }
  std::string logs() {
    std::string out;
    for (auto& [n, p] : agents) out += "--- agent " + n + "\n" + p->log();
    return out;
  }
  std::string routerMac() {
    // The outside router's neighbour entry for the egress address.
    return lab->exec(lab->outside(), "ip neigh show " + egress + " dev br-up");
  }
  std::string macOf(const std::string& node) {
    auto mac = lab->exec(lab->node(node), "cat /sys/class/net/up0/address");
    while (!mac.empty() && (mac.back() == '\n' || mac.back() == ' ')) mac.pop_back();
    return mac;
  }

  // The probe: `count` UDP packets 10 ms apart (a new flow each). Returns
  // the longest run of probes that did not arrive (in ms) and the set of
  // sources seen.
  struct Probe {
    int64_t gap_ms = 0;
    size_t arrived = 0;
    std::set<std::string> sources;
  };
  Probe probe(const std::string& tag, int count) {
    Probe p;
    std::vector<bool> got(static_cast<size_t>(count), false);
    for (const auto& l : lab->serverLines()) {
      std::istringstream in(l);
      std::string proto, peer, t;
      int seq = -1;
      in >> proto >> peer >> t >> seq;
      if (t != tag || seq < 0 || seq >= count) continue;
      got[static_cast<size_t>(seq)] = true;
      p.sources.insert(peer.substr(0, peer.rfind(':')));
    }
    int64_t run = 0;
    for (bool g : got) {
      run = g ? 0 : run + 1;
      p.gap_ms = std::max(p.gap_ms, run * 10);
      p.arrived += g;
    }
    return p;
  }

  std::unique_ptr<lab::Lab> lab;
  std::map<std::string, lab::Process*> agents;
  std::string key, egress, owner, standby;
  int n_ = 0;
};

TEST_F(Failover, TheOwnerNodeLostItsAddressLeavesFromTheStandbyWithinOneSecond) {
  const std::string mac_before = routerMac();
  ASSERT_NE(mac_before.find(macOf(owner)), std::string::npos) << mac_before;
  // 4 s of probes; the owner's node is lost after 1 s (kill -9 of its agent,
  // its links cut: the node is gone).
  std::thread prober([&] { lab->send("pay-w1", "udp", "probe", 400, 10, true, 100); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  agents[owner]->signal(SIGKILL);
  lab->exec(lab->node(owner), "ip link set up0 down");
  lab->exec(lab->node(owner), "ip link set eth0 down");
  prober.join();
  const auto p = probe("probe", 400);
  std::cout << "probe gap " << p.gap_ms << " ms, " << p.arrived << "/400 arrived, owner " << owner
            << " -> " << standby << "\n";
  EXPECT_EQ(p.sources, std::set<std::string>{egress}) << "only ever the namespace's address";
  EXPECT_GT(p.arrived, 200u);
  EXPECT_LT(p.gap_ms, 1500) << logs();  // generous; bench/ has the precise figures
  // The router's hours-long entry moved with the announcement.
  EXPECT_NE(routerMac().find(macOf(standby)), std::string::npos) << routerMac();
  // The ledger (and so every node's state) follows: the address is the standby's.
  EXPECT_TRUE(lab::eventually([&] { return ownerOf("w1") == standby; }, std::chrono::seconds(5)));
  EXPECT_NE(
      lab->exec(lab->outside(), "cat " + lab->dir() + "/gateway-state/leases.json").find(standby),
      std::string::npos);
}

// Established flows across the owner's loss, of the kinds luck cannot carry:
// downloads where only the server talks after the failover (a packet to the
// egress address without a conntrack entry is answered with a reset), two
// pods whose source ports collide on the shared address (the kernel remapped
// one of them), and UDP flows whose server checks it sees one address:port
// throughout. Reported per kind; with conntrack sync every one survives.
struct Survival {
  std::map<std::string, std::pair<int, int>> ok;  // kind → (survived, total)
  std::map<std::string, int> gap;
  std::string raw;
};
Survival parseStreams(const std::vector<std::string>& outputs) {
  Survival s;
  for (const auto& out : outputs) {
    s.raw += out;
    static const std::regex line(R"(^(talk|down|udp) (\d+)/(\d+) gap (\d+)$)");
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) {
      std::smatch m;
      if (!std::regex_match(l, m, line)) continue;
      s.ok[m[1]].first += std::stoi(m[2]);
      s.ok[m[1]].second += std::stoi(m[3]);
      s.gap[m[1]] = std::max(s.gap[m[1]], std::stoi(m[4]));
    }
  }
  return s;
}

// Runs long-lived flows in both pods (colliding source ports: both bind the
// same ones to the same server ports, so on the shared egress address the
// kernel remaps one of each pair) and loses the owner's node 2.5 s in.
// Returns the survival per kind; `remapped`: flows whose translated port
// differed from their own before the loss.
Survival loseTheOwnerDuringStreams(Failover& t, int* remapped) {
  std::vector<std::string> outputs(2);
  std::vector<std::thread> clients;
  int i = 0;
  for (const char* pod : {"pay-w1", "pay-w2"}) {
    clients.emplace_back([&, pod, i] {
      outputs[static_cast<size_t>(i)] =
          t.lab->exec(t.lab->pod(pod),
                      lab::labtoolPath() + " streams --dst " + std::string(lab::Lab::kOutsideIp) +
                          " --talk 15 --down 15 --udp 10 --seconds 9 --base-port 41000 2>&1");
    });
    ++i;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const auto before =
      t.lab->exec(t.lab->node(t.owner), "conntrack -L -p tcp --dport 9003 2>/dev/null");
  t.agents[t.owner]->signal(SIGKILL);
  t.lab->exec(t.lab->node(t.owner), "ip link set up0 down");
  t.lab->exec(t.lab->node(t.owner), "ip link set eth0 down");
  for (auto& c : clients) c.join();
  auto s = parseStreams(outputs);
  for (const char* k : {"talk", "down", "udp"})
    std::cout << k << ": " << s.ok[k].first << "/" << s.ok[k].second << " survived, longest gap "
              << s.gap[k] << " ms\n";
  *remapped = 0;
  for (std::istringstream in(before); !in.eof();) {
    std::string line;
    std::getline(in, line);
    const auto a = line.find("sport="), b = line.rfind("dport=");
    if (a == std::string::npos || b == std::string::npos) continue;
    *remapped += line.substr(a + 6, line.find(' ', a) - a - 6) !=
                 line.substr(b + 6, line.find(' ', b) - b - 6);
  }
  return s;
}

TEST_F(Failover, EstablishedFlowsSurviveTheOwnersLossWithTheSameAddressAndPort) {
  int remapped = 0;
  auto s = loseTheOwnerDuringStreams(*this, &remapped);
  EXPECT_GT(remapped, 0) << "the collision did not happen";
  for (const char* k : {"talk", "down", "udp"}) {
    ASSERT_EQ(s.ok[k].second, k == std::string("udp") ? 20 : 30) << s.raw;
    EXPECT_EQ(s.ok[k].first, s.ok[k].second)
        << k << "\n"
        << s.raw << logs() << "\n--- standby's flows\n"
        << lab->exec(lab->node(standby), "conntrack -L -p tcp --dport 9003 2>&1 | head -50");
  }
  EXPECT_NE(agents[standby]->log().find("committed"), std::string::npos);
}

// The same without conntrack sync: what luck carries and what it cannot.
// Proves the test above can fail: downloads (only the server talks) are
// reset by the new owner, and the remapped flows come back with another port.
class FailoverWithoutSync : public Failover {
  std::vector<std::string> agentExtra() const override { return {"--no-ct-sync"}; }
};

TEST_F(FailoverWithoutSync, OnlyLuckCarriesFlowsAndNotTheKindsThatNeedState) {
  int remapped = 0;
  auto s = loseTheOwnerDuringStreams(*this, &remapped);
  ASSERT_GT(remapped, 0);
  EXPECT_LT(s.ok["down"].first, s.ok["down"].second) << s.raw;
  EXPECT_LT(s.ok["udp"].first, s.ok["udp"].second) << s.raw;
}

// Planned: `nsegressctl drain NODE` hands the owner's address over to its
// standby — the owner's fence closes first, then the standby takes it at
// once with the flows committed. Established flows of every kind survive;
// the probe (a new flow every 10 ms) loses at most what falls into the
// switch.
TEST_F(Failover, ADrainHandsTheAddressOverAndEveryEstablishedFlowSurvives) {
  std::vector<std::string> outputs(2);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < 2; ++i)
    clients.emplace_back([&, i] {
      outputs[i] =
          lab->exec(lab->pod(i == 0 ? "pay-w1" : "pay-w2"),
                    lab::labtoolPath() + " streams --dst " + std::string(lab::Lab::kOutsideIp) +
                        " --talk 15 --down 15 --udp 10 --seconds 7 --base-port 41000 2>&1");
    });
  std::thread prober([&] { lab->send("pay-w1", "udp", "drain", 500, 10, true, 100); });
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const auto out = lab->ctl("drain " + owner);
  EXPECT_NE(out.find("\"drained\": true"), std::string::npos) << out;
  prober.join();
  for (auto& c : clients) c.join();
  const auto p = probe("drain", 500);
  auto s = parseStreams(outputs);
  std::cout << "drain: probe " << p.arrived << "/500 arrived, longest gap " << p.gap_ms << " ms\n";
  for (const char* k : {"talk", "down", "udp"})
    std::cout << "drain: " << k << " " << s.ok[k].first << "/" << s.ok[k].second
              << " survived, longest gap " << s.gap[k] << " ms\n";
  EXPECT_EQ(p.sources, std::set<std::string>{egress}) << "only ever the namespace's address";
  EXPECT_TRUE(lab::eventually([&] { return ownerOf("w1") == standby; }, std::chrono::seconds(5)))
      << logs();
  EXPECT_NE(routerMac().find(macOf(standby)), std::string::npos) << routerMac();
  for (const char* k : {"talk", "down", "udp"}) {
    ASSERT_EQ(s.ok[k].second, k == std::string("udp") ? 20 : 30) << s.raw;
    EXPECT_EQ(s.ok[k].first, s.ok[k].second) << k << "\n" << s.raw << logs();
  }
  // The switch waits for no lease (an unplanned takeover's gap is ~500 ms):
  // a few probes at most (the precise figures are in bench/results).
  EXPECT_LT(p.gap_ms, 300) << "a drain waits for no lease";
  EXPECT_NE(agents[owner]->log().find("handing"), std::string::npos) << logs();
  // The drained node hosts nothing new: undrain lets it stand by again.
  EXPECT_NE(lab->ctl("undrain " + owner).find("\"drained\": false"), std::string::npos);
}

// The owner's uplink is cut (its switch port: the far end of its link goes
// down, the node and its agent live on): it stops using and claiming the
// address, its standby takes it over within the bound, flows carried.
TEST_F(Failover, ACutUplinkMovesTheAddressToTheStandbyWithinOneSecond) {
  std::thread prober([&] { lab->send("pay-w1", "udp", "cut", 300, 10, true, 100); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  lab->exec(lab->outside(), "ip link set u-" + owner + " down");
  prober.join();
  const auto p = probe("cut", 300);
  std::cout << "uplink cut: probe gap " << p.gap_ms << " ms, " << p.arrived << "/300 arrived\n";
  EXPECT_EQ(p.sources, std::set<std::string>{egress});
  EXPECT_GT(p.arrived, 150u);
  EXPECT_LT(p.gap_ms, 1500) << logs();
  EXPECT_NE(agents[owner]->log().find("uplink down"), std::string::npos) << logs();
  EXPECT_NE(agents[standby]->log().find("took over"), std::string::npos) << logs();
  // Back: the old owner stands by again, and nothing flaps back.
  lab->exec(lab->outside(), "ip link set u-" + owner + " up");
  EXPECT_TRUE(lab::eventually(
      [&] { return agents[owner]->log().find("uplink up again") != std::string::npos; }));
  EXPECT_TRUE(lab::eventually([&] { return ownerOf("w1") == standby; }, std::chrono::seconds(5)));
}

// The lost node comes back (links up, agent restarted): it stands by, and
// new flows of every pod keep working through the new owner.
TEST_F(Failover, ALostNodeThatComesBackStandsByAndNewFlowsWork) {
  agents[owner]->signal(SIGKILL);
  lab->exec(lab->node(owner), "ip link set up0 down; ip link set eth0 down");
  ASSERT_TRUE(lab::eventually([&] { return ownerOf("w1") == standby; }, std::chrono::seconds(5)));
  lab->exec(lab->node(owner), "ip link set up0 up; ip link set eth0 up");
  agents[owner] = &startAgent(owner);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  for (const char* pod : {"pay-w1", "pay-w2"}) {
    const std::string tag = std::string("back-") + pod;
    lab->send(pod, "tcp", tag, 3, 10, true, 1000);
    EXPECT_EQ(lab->peersOf(tag), std::set<std::string>{egress}) << pod << "\n" << logs();
  }
}

TEST_F(Failover, AKilledAgentsNodeStopsUsingTheAddressByItselfAndTheStandbyTakesOver) {
  // Only the agent dies: the node, its address and its SNAT maps stay. The
  // kernel fence closes when the proof runs out, without the agent.
  agents[owner]->signal(SIGKILL);
  EXPECT_TRUE(lab::eventually(
      [&] {
        return lab->exec(lab->node(owner), "nft list set arp nsegress-fence live4").find(egress) ==
               std::string::npos;
      },
      std::chrono::seconds(3)));
  EXPECT_TRUE(lab::eventually(
      [&] {
        return lab->exec(lab->node(standby), "nft list set arp nsegress-fence live4")
                   .find(egress) != std::string::npos;
      },
      std::chrono::seconds(3)))
      << logs();
  // Never both: the old owner's fence is closed while the standby's is open,
  // and the outside sees only the namespace's address from the standby.
  EXPECT_EQ(lab->exec(lab->node(owner), "nft list set arp nsegress-fence live4").find(egress),
            std::string::npos);
  EXPECT_TRUE(lab::eventually([&] { return reaches("pay-w1") && reaches("pay-w2"); },
                              std::chrono::seconds(5)))
      << logs();
  EXPECT_NE(routerMac().find(macOf(standby)), std::string::npos) << routerMac();
}

TEST_F(Failover, AnOutageOfTheControllerAloneNeitherStopsNorMovesAnything) {
  // The lease server is gone: the owner lives on its standby's promises.
  lab->exec(lab->outside(), "pkill -STOP -f '[n]segress-controller'");
  std::thread prober([&] { lab->send("pay-w1", "udp", "calm", 300, 10, true, 100); });
  prober.join();
  lab->exec(lab->outside(), "pkill -CONT -f '[n]segress-controller'");
  const auto p = probe("calm", 300);
  EXPECT_EQ(p.sources, std::set<std::string>{egress});
  EXPECT_GE(p.arrived, 297u) << "at most the odd lost datagram";
  EXPECT_EQ(ownerOf("w1"), owner);
  EXPECT_NE(routerMac().find(macOf(owner)), std::string::npos);
}

// The partition matrix of property 1, on the owner of the address: cut off
// from the store only, from its peers only, from both (its uplink still
// up: the dangerous one), and from everything. During each, the outside
// router's bridge watches the two gateways' ports: a packet or an ARP
// message with the egress address from one port within 50 ms of one from
// the other port is counted as an overlap (two owners seen from outside;
// a legitimate move leaves a gap of hundreds of ms). Expected: no overlap
// ever, only the namespace's address; no move while either proof holds
// (store only, peers only), a move to the standby otherwise.
TEST_F(Failover, ThePartitionMatrixNeverShowsTwoOwnersFromOutside) {
  std::string watch =
      "table bridge nse_watch {\n"
      "  set r1 { type ipv4_addr; flags timeout, dynamic; }\n"
      "  set r2 { type ipv4_addr; flags timeout, dynamic; }\n"
      "  counter ip1 {}\n  counter ip2 {}\n  counter arp1 {}\n  counter arp2 {}\n"
      "  counter seen1 {}\n  counter seen2 {}\n"
      "  counter udp1 {}\n  counter udp2 {}\n  counter tcp1 {}\n  counter tcp2 {}\n"
      "  counter icmp1 {}\n  counter icmp2 {}\n"
      "  chain pre {\n"
      "    type filter hook prerouting priority -300; policy accept;\n";
  for (const std::string n : {"1", "2"}) {
    const std::string port = "iifname \"u-gw" + n + "\" ";
    const std::string other = n == "1" ? "@r2" : "@r1";
    watch += "    " + port + "ip saddr " + other + " counter name ip" + n + "\n";
    watch += "    " + port + "arp saddr ip " + other + " counter name arp" + n + "\n";
    if (std::getenv("NSEGRESS_WATCH_DEBUG"))
      for (const std::string proto : {"udp", "tcp", "icmp"})
        watch += "    " + port + "ip saddr " + other + " ip protocol " + proto + " counter name " +
                 proto + n + "\n";
    watch += "    " + port + "ip saddr " + egress + " counter name seen" + n + "\n";
    watch +=
        "    " + port + "ip saddr " + egress + " update @r" + n + " { ip saddr timeout 50ms }\n";
    watch += "    " + port + "arp saddr ip " + egress + " update @r" + n +
             " { arp saddr ip timeout 50ms }\n";
  }
  watch += "  }\n}\n";
  std::ofstream(lab->dir() + "/watch.nft") << watch;
  lab->exec(lab->outside(), "nft -f " + lab->dir() + "/watch.nft");
  auto counter = [&](const std::string& name) {
    const auto out = lab->exec(lab->outside(), "nft list counter bridge nse_watch " + name);
    const auto at = out.find("packets ");
    return at == std::string::npos ? -1 : std::atoll(out.c_str() + at + 8);
  };
  // IP packets or ARP messages of the address from one port while the other
  // port sent some within 50 ms.
  auto overlaps = [&] {
    return counter("ip1") + counter("ip2") + counter("arp1") + counter("arp2");
  };
  ASSERT_EQ(overlaps(), 0) << "the watch is in place";
  struct Case {
    const char* name;
    bool store, peers, uplink, moves;
  };
  int i = 0;
  for (const Case& c :
       {Case{"store", true, false, false, false}, Case{"peers", false, true, false, false},
        Case{"store+peers", true, true, false, true}, Case{"everything", true, true, true, true}}) {
    const std::string tag = "part" + std::to_string(i++);
    std::string rules =
        "table inet nse_part {\n"
        "  chain in { type filter hook input priority -400; policy accept;\n";
    std::string out_rules = "  chain out { type filter hook output priority -400; policy accept;\n";
    if (c.store) {
      rules += "    ip saddr 192.0.2.1 udp sport 4795 drop\n";
      out_rules += "    ip daddr 192.0.2.1 udp dport 4795 drop\n";
    }
    if (c.peers) {
      const std::string peer = lab::Lab::nodeIp(standby);
      rules += "    ip saddr " + peer + " udp sport { 4794, 4796 } drop\n";
      out_rules += "    ip daddr " + peer + " udp dport { 4794, 4796 } drop\n";
    }
    rules += "  }\n" + out_rules + "  }\n}\n";
    std::ofstream(lab->dir() + "/partition.nft") << rules;
    std::thread prober([&] { lab->send("pay-w1", "udp", tag, 300, 10, true, 100); });
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    lab->exec(lab->node(owner), "nft -f " + lab->dir() + "/partition.nft");
    if (c.uplink) lab->exec(lab->outside(), "ip link set u-" + owner + " down");
    std::this_thread::sleep_for(std::chrono::milliseconds(1700));
    lab->exec(lab->node(owner), "nft delete table inet nse_part");
    if (c.uplink) lab->exec(lab->outside(), "ip link set u-" + owner + " up");
    prober.join();
    const auto p = probe(tag, 300);
    std::cout << "partition " << c.name << " of " << owner << ": probe gap " << p.gap_ms << " ms, "
              << p.arrived << "/300 arrived, overlaps " << overlaps() << " (ip " << counter("ip1")
              << "/" << counter("ip2") << ", arp " << counter("arp1") << "/" << counter("arp2")
              << ")\n";
    if (std::getenv("NSEGRESS_WATCH_DEBUG"))
      for (const std::string k : {"udp", "tcp", "icmp"})
        std::cout << "  " << k << " " << counter(k + "1") << "/" << counter(k + "2") << "\n";
    EXPECT_EQ(overlaps(), 0) << c.name << ": two owners seen from outside\n" << logs();
    EXPECT_EQ(p.sources, std::set<std::string>{egress}) << c.name;
    if (!c.moves) {
      EXPECT_LT(p.gap_ms, 300) << c.name << ": one proof holds, nothing stops\n" << logs();
      EXPECT_EQ(ownerOf("w1"), owner) << c.name;
      continue;
    }
    EXPECT_LT(p.gap_ms, 1500) << c.name << "\n" << logs();
    EXPECT_TRUE(lab::eventually([&] { return ownerOf("w1") == standby; }, std::chrono::seconds(5)))
        << c.name << "\n"
        << logs();
    std::swap(owner, standby);
    // Healed: the old owner stands by again; let heartbeats settle.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    ASSERT_TRUE(lab::eventually([&] { return reaches("pay-w1"); }, std::chrono::seconds(5)))
        << c.name << "\n"
        << logs();
  }
  // The watch saw the address from both ports (it moved there and back):
  // it would have seen an overlap.
  EXPECT_GT(counter("seen1"), 50);
  EXPECT_GT(counter("seen2"), 50);
}

}  // namespace
}  // namespace nsegress::testing
