// Benchmark 6: the cost of steering, in the cluster lab (tests/lab/lab.h).
//
//   no steering   the pod runs on the gateway node that hosts its address
//   L2 next hop   the pod runs on a worker; a direct next hop to the gateway
//   tunnel        the pod runs on a worker; VXLAN to the gateway
//
// For each, in one run: the new-flow rate (raw UDP, a new flow per packet,
// counted at the outside host for a fixed time) and the throughput of one TCP
// transfer. Then, at 10,000 namespaces: the time to re-point one namespace
// (one nft transaction) and to re-point every namespace of one gateway (one
// next-hop replace).
#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "flood.h"
#include "lab.h"
#include "nsegress/netlink/nft.h"
#include "nsegress/netlink/routes.h"

using namespace nsegress;
using Steady = std::chrono::steady_clock;

namespace {

struct Result {
  std::vector<double> rate, gbps;
};

// One cluster lab (tunnel or L2); measures "no steering" (pod on gw1) and
// steering (pod on w1).
std::map<std::string, Result> measureLab(bool tunnel, int rounds, double secs, uint64_t bytes) {
  lab::Lab lab(tunnel ? "bstt" : "bstl", lab::ClusterOptions{tunnel, "iptables-nft"});
  lab.addPodOn("gw1", "pay-g1", "10.244.1.2", "fd00:244:1::2");
  lab.addPodOn("w1", "pay-w1", "10.244.3.2", "fd00:244:3::2");
  std::string nodes = lab::Lab::nodeManifests();
  const std::string label = "  labels: {nsegress.io/gateway: \"true\"}\n";
  nodes.erase(nodes.find(label, nodes.find("name: gw2")), label.size());  // gw1 hosts
  lab.writeManifest("00-nodes.yaml", nodes);
  lab.writeManifest("10-pool.yaml", lab::Lab::payManifests(
                                        {{"a", "gw1", "10.244.1.2"}, {"b", "w1", "10.244.3.2"}}));
  lab.startServers();
  lab.startController();
  for (const char* n : lab::Lab::kNodes) lab.startNodeAgent(n);
  // The sink counts and drops the generated flows in its first hook.
  bench::installSink(lab);
  int probe = 0;
  for (const char* pod : {"pay-g1", "pay-w1"})
    lab::eventually(
        [&] {
          const std::string tag = "w" + std::to_string(++probe);
          lab.send(pod, "udp", tag, 1, 1, true, 300);
          return lab.peersOf(tag) == std::set<std::string>{"203.0.113.10"};
        },
        std::chrono::seconds(30));
  std::map<std::string, Result> out;
  const std::string steered = tunnel ? "tunnel" : "L2 next hop";
  for (int r = 0; r < rounds; ++r) {
    for (auto [variant, pod, ip] : {std::tuple{std::string("no steering"), "pay-g1", "10.244.1.2"},
                                    std::tuple{steered, "pay-w1", "10.244.3.2"}}) {
      lab.exec(lab.node("gw1"), "conntrack -F");
      lab.exec(lab.node("w1"), "conntrack -F");
      const uint64_t before = bench::sinkCount(lab);
      {
        lab::NetnsEnter in(lab.pod(pod));
        bench::generate(ip, secs);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      out[variant].rate.push_back(static_cast<double>(bench::sinkCount(lab) - before) / secs);
      const std::string b = lab.bulk(pod, lab::Lab::kOutsideIp, bytes);
      const auto at = b.find(" in ");
      const double s = at == std::string::npos ? 0 : std::stod(b.substr(at + 4));
      out[variant].gbps.push_back(s > 0 ? static_cast<double>(bytes) * 8 / s / 1e9 : 0);
    }
  }
  return out;
}

// Re-pointing at 10,000 namespaces: one element changed in a steer map of
// 10,000 pods (one transaction), and one next-hop replace.
std::pair<std::vector<double>, std::vector<double>> measureRepoint(int namespaces, int repeats) {
  lab::Lab lab("bstr");
  lab::NetnsEnter in(lab.gw());
  netlink::NftConfig c;
  c.uplink = lab::Lab::kUplink;
  c.steer = true;
  auto nft = netlink::NftTable::open(c);
  if (!nft) throw std::runtime_error(nft.error().message);
  using K = gateway::NftOp::Kind;
  std::vector<gateway::NftOp> ops = {{K::kCreateTable, "", {}, {}, {}}};
  for (int i = 0; i < namespaces; ++i)
    ops.push_back({K::kAddSteer,
                   "",
                   IpAddress::v4(0x0A010000u + static_cast<uint32_t>(i)),
                   {},
                   {},
                   gateway::markOfSlot(1)});
  if (auto r = (*nft)->apply(ops); !r) throw std::runtime_error(r.error().message);
  std::vector<double> one_ns, one_gw;
  const IpAddress pod = IpAddress::v4(0x0A010000u + 4242);
  for (int i = 0; i < repeats; ++i) {
    const uint32_t from = gateway::markOfSlot(1 + i % 2), to = gateway::markOfSlot(1 + (i + 1) % 2);
    const auto t0 = Steady::now();
    auto r =
        (*nft)->apply({{K::kDelSteer, "", pod, {}, {}, from}, {K::kAddSteer, "", pod, {}, {}, to}});
    one_ns.push_back(bench::seconds(Steady::now() - t0) * 1e3);
    if (!r) throw std::runtime_error(r.error().message);
  }
  auto routes = netlink::SteerRoutes::open("");
  if (!routes) throw std::runtime_error(routes.error().message);
  if (auto r = (*routes)->addSlot(1); !r) throw std::runtime_error(r.error().message);
  for (int i = 0; i < repeats; ++i) {
    gateway::Hop h;
    h.via4 = IpAddress::v4(0xC6336400u + 10 + static_cast<uint32_t>(i % 2));  // 198.51.100.10/11
    h.dev = lab::Lab::kUplink;
    const auto t0 = Steady::now();
    auto r = (*routes)->setHop(1, h);
    one_gw.push_back(bench::seconds(Steady::now() - t0) * 1e3);
    if (!r) throw std::runtime_error(r.error().message);
  }
  (void)(*routes)->destroyAll();
  return {one_ns, one_gw};
}

std::string fmt(double v, int prec = 2) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(prec);
  o << v;
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"steering cost benchmark"};
  int rounds = 3, namespaces = 10000, repeats = 50;
  double secs = 1.0;
  uint64_t bytes = 256ull << 20;
  std::string out_dir = "bench/results";
  app.add_option("--rounds", rounds);
  app.add_option("--seconds", secs, "generator time per round");
  app.add_option("--bytes", bytes, "bytes per TCP transfer");
  app.add_option("--namespaces", namespaces);
  app.add_option("--out", out_dir);
  CLI11_PARSE(app, argc, argv);
  if (geteuid() != 0) {
    std::cerr << "needs root (network namespaces)\n";
    return 2;
  }
  lab::cleanupAll();
  auto results = measureLab(true, rounds, secs, bytes);
  for (auto& [k, v] : measureLab(false, rounds, secs, bytes)) {
    if (k == "no steering") {  // the same variant in both labs: keep all rounds
      results[k].rate.insert(results[k].rate.end(), v.rate.begin(), v.rate.end());
      results[k].gbps.insert(results[k].gbps.end(), v.gbps.begin(), v.gbps.end());
    } else {
      results[k] = v;
    }
  }
  auto [one_ns, one_gw] = measureRepoint(namespaces, repeats);

  const double base_rate = bench::stats(results["no steering"].rate).median;
  const double base_gbps = bench::stats(results["no steering"].gbps).median;
  std::ostringstream md;
  md << "# Benchmark 6: the cost of steering\n\n"
     << bench::machine() << "; `bench/run.sh steering`.\n\n"
     << "One pod of one namespace; the outside host counts what arrives. *No steering*: the "
        "pod runs on the gateway node that hosts the address (the limit); *L2 next hop* and "
        "*tunnel*: the pod runs on a worker and is steered to that gateway. New-flow rate: raw "
        "UDP, every packet a new flow (conntrack, marking, NAT on every packet), "
     << secs << " s per round; throughput: one TCP transfer of " << (bytes >> 20)
     << " MiB (labtool bulk, the sender's CPU included). All in network namespaces on one "
        "host, so absolute numbers are the host's; compare ratios. Median of "
     << rounds << " rounds (the no-steering row: " << 2 * rounds << ", both labs).\n\n"
     << "| path | new flows/s (median, min-max) | vs no steering | TCP Gbit/s (median) | vs no "
        "steering |\n|---|---:|---:|---:|---:|\n";
  nlohmann::json raw;
  for (const char* v : {"no steering", "L2 next hop", "tunnel"}) {
    auto r = bench::stats(results[v].rate);
    auto g = bench::stats(results[v].gbps);
    md << "| " << v << " | " << fmt(r.median, 0) << " (" << fmt(r.min, 0) << "-" << fmt(r.max, 0)
       << ") | " << fmt(r.median / base_rate) << " | " << fmt(g.median) << " | "
       << fmt(g.median / base_gbps) << " |\n";
    raw[v] = {{"rates", results[v].rate}, {"gbps", results[v].gbps}};
  }
  md << "\nReading it: the tunnel costs VXLAN encapsulation on the worker and decapsulation "
        "plus the input checks (nodes, peers) on the gateway for every packet. Here all nodes "
        "share one host's 2 cores: with steering, the worker's and the gateway's work (two "
        "softirq passes) can run on both cores at once, which is why the L2 next hop can show a "
        "new-flow rate at or above the no-steering limit; in a cluster each node has its own "
        "CPUs and the ratios are an upper bound on the cost.\n";
  auto a = bench::stats(one_ns), b = bench::stats(one_gw);
  md << "\nRe-pointing, with " << namespaces << " namespaces steered (" << repeats
     << " repeats):\n\n| change | netlink operations | ms (median, min-max) |\n|---|---:|---:|\n"
     << "| one namespace to another gateway (its steer-map element: delete + add) | 1 "
        "transaction | "
     << fmt(a.median, 3) << " (" << fmt(a.min, 3) << "-" << fmt(a.max, 3) << ") |\n"
     << "| every namespace of one gateway (the gateway's next hop replaced) | 1 next-hop "
        "replace (+ its route, unchanged) | "
     << fmt(b.median, 3) << " (" << fmt(b.min, 3) << "-" << fmt(b.max, 3) << ") |\n";
  raw["repoint_one_namespace_ms"] = one_ns;
  raw["repoint_one_gateway_ms"] = one_gw;
  std::cout << md.str();
  bench::writeFile(out_dir + "/steering.md", md.str());
  bench::writeFile(out_dir + "/steering.json", raw.dump(2) + "\n");
  return 0;
}
