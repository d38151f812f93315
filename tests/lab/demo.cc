// nsegress-demo: the whole story in a lab of network namespaces. Prints what
// the outside host saw, step by step, and exits non-zero if any step's
// promise was broken (the e2e test runs it).
#include <unistd.h>

#include <csignal>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include "lab.h"
#include "nsegress/common/desired_state.h"

using namespace nsegress;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::cout << (ok ? "   ok    " : "   FAIL  ") << what << "\n";
  if (!ok) ++failures;
}

std::string setToString(const std::set<std::string>& s) {
  if (s.empty()) return "(nothing)";
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ", ") + x;
  return out;
}

std::string state(
    const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>>& nss,
    uint64_t gen) {
  DesiredState s;
  s.gateway = "gw";
  s.generation = gen;
  for (const auto& [name, egress, pods] : nss) {
    NamespaceEgress e;
    e.name = name;
    if (!egress.empty()) e.egress_v4 = *IpAddress::parse(egress);
    for (const auto& p : pods) e.pod_ips.push_back(*IpAddress::parse(p));
    s.namespaces.push_back(e);
  }
  return serializeDesiredState(s);
}

}  // namespace

int main() {
  if (geteuid() != 0) {
    std::cerr << "the demo needs root: it builds network namespaces\n";
    return 2;
  }
  lab::Lab lab("demo");
  std::cout << "== nsegress demo: per-namespace egress IPs, in a lab of network namespaces\n"
            << "   pods -> gateway (" << lab.gw() << ", uplink up0 198.51.100.1) -> outside host "
            << lab::Lab::kOutsideIp << "\n\n";
  lab.addPod("pay-1", "10.244.1.2");
  lab.addPod("pay-2", "10.244.1.3");
  lab.addPod("web-1", "10.244.2.2");
  lab.addPod("new-1", "10.244.3.2");
  lab.startServers();

  std::cout << "1. Namespace 'payments' gets 203.0.113.10, 'web' gets 203.0.113.11,\n"
               "   'analytics' is annotated but has no IP yet (fail-closed).\n";
  lab.writeState(state({{"payments", "203.0.113.10", {"10.244.1.2", "10.244.1.3"}},
                        {"web", "203.0.113.11", {"10.244.2.2"}},
                        {"analytics", "", {"10.244.3.2"}}},
                       1));
  auto& gw = lab.startGateway(lab.statePath(), {"--metrics-address", "127.0.0.1:9464"});
  lab::eventually([&] { return gw.log().find("reconciled in") != std::string::npos; });
  for (const auto& [pod, ns] : std::vector<std::pair<std::string, std::string>>{
           {"pay-1", "payments"}, {"pay-2", "payments"}, {"web-1", "web"}}) {
    lab.send(pod, "udp", "u-" + pod, 3, 5, true);
    lab.send(pod, "tcp", "t-" + pod, 3, 5, true);
    auto peers = lab.peersOf("u-" + pod);
    for (auto& p : lab.peersOf("t-" + pod)) peers.insert(p);
    std::cout << "   " << ns << "/" << pod << " -> outside saw source " << setToString(peers)
              << "\n";
  }
  check(lab.peersOf("u-pay-1") == std::set<std::string>{"203.0.113.10"} &&
            lab.peersOf("t-pay-2") == std::set<std::string>{"203.0.113.10"},
        "payments leaves as 203.0.113.10 (UDP and TCP)");
  check(lab.peersOf("t-web-1") == std::set<std::string>{"203.0.113.11"},
        "web leaves as 203.0.113.11");
  lab.send("new-1", "udp", "u-new-1", 3, 5, true);
  lab.send("new-1", "tcp", "t-new-1", 1, 5, true, 300);
  std::cout << "   analytics/new-1 -> outside saw source " << setToString(lab.peersOf("u-new-1"))
            << "\n";
  check(lab.peersOf("u-new-1").empty() && !lab.seenSources().count("10.244.3.2"),
        "analytics reaches nothing before its IP is live; drops counted:");
  std::cout << "     "
            << lab.exec(lab.gw(), "nft list counter inet nsegress drop-analytics | grep packets");

  std::cout << "\n2. 'analytics' gets 203.0.113.12: one atomic switch from drop to SNAT.\n";
  lab.writeState(state({{"payments", "203.0.113.10", {"10.244.1.2", "10.244.1.3"}},
                        {"web", "203.0.113.11", {"10.244.2.2"}},
                        {"analytics", "203.0.113.12", {"10.244.3.2"}}},
                       2));
  lab::eventually([&] {
    return lab.exec(lab.gw(), "nft list map inet nsegress snat4").find("10.244.3.2") !=
           std::string::npos;
  });
  lab.send("new-1", "udp", "u2-new-1", 3, 5, true);
  std::cout << "   analytics/new-1 -> outside saw source " << setToString(lab.peersOf("u2-new-1"))
            << "\n";
  check(lab.peersOf("u2-new-1") == std::set<std::string>{"203.0.113.12"},
        "analytics leaves as 203.0.113.12");

  std::cout << "\n3. The agent is killed (SIGKILL) and restarted during a stream of new flows.\n";
  auto& stream = lab.spawn(
      lab.pod("pay-1"),
      {lab::labtoolPath(), "send", "--proto", "udp", "--dst", lab::Lab::kOutsideIp, "--port",
       "9000", "--tag", "restart", "--count", "200", "--interval-ms", "10", "--fresh"},
      "stream.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  gw.signal(SIGKILL);
  gw.wait();
  auto& gw2 = lab.startGateway(lab.statePath(), {"--metrics-address", "127.0.0.1:9464"});
  stream.wait();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  size_t got = 0;
  for (const auto& l : lab.serverLines()) got += l.find(" restart ") != std::string::npos;
  std::cout << "   outside received " << got << "/200 datagrams, all from "
            << setToString(lab.peersOf("restart")) << "\n";
  check(got == 200 && lab.peersOf("restart") == std::set<std::string>{"203.0.113.10"},
        "no loss, no other source across the restart");

  std::cout << "\n4. 'payments' is released while a TCP stream runs.\n";
  auto& tcp =
      lab.spawn(lab.pod("pay-2"),
                {lab::labtoolPath(), "send", "--proto", "tcp", "--dst", lab::Lab::kOutsideIp,
                 "--port", "9001", "--tag", "long", "--count", "300", "--interval-ms", "20"},
                "tcp.log");
  lab::eventually([&] { return !lab.peersOf("long").empty(); });
  std::string ct_before =
      lab.exec(lab.gw(), "conntrack -L --reply-dst 203.0.113.10 2>/dev/null | wc -l");
  lab.writeState(state(
      {{"web", "203.0.113.11", {"10.244.2.2"}}, {"analytics", "203.0.113.12", {"10.244.3.2"}}}, 3));
  // The ownership record is cleared last, after the address and the flows.
  lab::eventually([&] {
    return lab.exec(lab.gw(), "nft list set inet nsegress owned4").find("203.0.113.10") ==
           std::string::npos;
  });
  std::string ct_after =
      lab.exec(lab.gw(), "conntrack -L --reply-dst 203.0.113.10 2>/dev/null | wc -l");
  lab.clearSeen();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto seen = lab.seenSources();
  const uint64_t leaked = seen.count("203.0.113.10") ? seen.at("203.0.113.10") : 0;
  std::cout << "   conntrack flows via 203.0.113.10: before "
            << ct_before.substr(0, ct_before.find('\n')) << ", after "
            << ct_after.substr(0, ct_after.find('\n')) << "\n"
            << "   packets from 203.0.113.10 at the outside since: " << leaked << "\n";
  check(ct_after.rfind("0", 0) == 0 && leaked == 0,
        "address, mappings and flows gone in the same reconcile; old IP never leaves again");
  tcp.signal(SIGKILL);
  (void)gw2;

  std::cout << "\n5. Per-namespace metrics, scraped from the agent's /metrics:\n";
  std::string metrics;
  lab::run("ip netns exec " + lab.gw() + " curl -s http://127.0.0.1:9464/metrics", &metrics);
  std::istringstream ms(metrics);
  for (std::string line; std::getline(ms, line);) {
    if (line.rfind("nsegress_gateway_namespace_", 0) == 0 ||
        line.rfind("nsegress_gateway_conntrack_flows{", 0) == 0)
      std::cout << "   " << line << "\n";
  }
  check(metrics.find("nsegress_gateway_namespace_egress_packets_total{namespace=\"web\",egress_ip="
                     "\"203.0.113.11\"}") != std::string::npos,
        "per-namespace egress counters exported");

  std::cout << (failures == 0 ? "== demo OK: every promise held\n" : "== demo FAILED\n");
  return failures == 0 ? 0 : 1;
}
