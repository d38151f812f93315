// Benchmark 1: new-connection rate through the gateway against the number of
// namespaces N. Every packet is a new flow (random source and destination
// ports), so NAT is consulted for every packet: the cost the rule set adds
// per new connection is what we measure.
//
// Variants, in the same run, order rotated every round:
//   nsegress          our table: one map lookup (snat ip to ip saddr map)
//   iptables-nft      linear SNAT chain, one rule per namespace (Debian's iptables)
//   iptables-legacy   the same chain on x_tables
//   conntrack-only    forwarding with conntrack and no NAT (the limit)
//
// Topology (lab): generator netns --veth--> gw netns --up0--> sink netns. The
// generator sends raw UDP packets with sources drawn from the N pod addresses;
// the sink drops them in its first hook and counts them (nft counter).
#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "lab.h"
#include "nsegress/gateway/snat_provider.h"
#include "nsegress/gateway/table_provider.h"
#include "nsegress/netlink/nft.h"

using namespace nsegress;
using Steady = std::chrono::steady_clock;

namespace {

IpAddress podIp(int i) {
  return IpAddress::v4(0x0A010000u + static_cast<uint32_t>(i));
}  // 10.1.0.0/16
IpAddress egressIp(int i) {
  return IpAddress::v4(0x0AC80000u + static_cast<uint32_t>(i));
}  // 10.200.0.0/16

struct Xorshift {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

// Sends new-flow UDP packets for `duration`; returns packets sent.
uint64_t generate(int n_sources, std::chrono::duration<double> duration, Xorshift& rng) {
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) throw std::runtime_error("raw socket");
  constexpr int kBatch = 64;
  constexpr size_t kLen = sizeof(iphdr) + sizeof(udphdr) + 18;
  static uint8_t pkts[kBatch][kLen];
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  inet_pton(AF_INET, lab::Lab::kOutsideIp, &dst.sin_addr);
  for (int i = 0; i < kBatch; ++i) {
    std::memset(pkts[i], 0, kLen);
    auto* ip = reinterpret_cast<iphdr*>(pkts[i]);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(kLen);
    ip->daddr = dst.sin_addr.s_addr;
    auto* udp = reinterpret_cast<udphdr*>(pkts[i] + sizeof(iphdr));
    udp->len = htons(kLen - sizeof(iphdr));
    iov[i] = {pkts[i], kLen};
    msgs[i].msg_hdr = {};
    msgs[i].msg_hdr.msg_name = &dst;
    msgs[i].msg_hdr.msg_namelen = sizeof dst;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t sent = 0;
  const auto end = Steady::now() + std::chrono::duration_cast<Steady::duration>(duration);
  while (Steady::now() < end) {
    for (int i = 0; i < kBatch; ++i) {
      auto* ip = reinterpret_cast<iphdr*>(pkts[i]);
      auto* udp = reinterpret_cast<udphdr*>(pkts[i] + sizeof(iphdr));
      const uint64_t r = rng.next();
      const uint32_t src =
          podIp(static_cast<int>(r % static_cast<uint64_t>(n_sources))).v4HostOrder();
      ip->saddr = htonl(src);
      udp->source = htons(static_cast<uint16_t>(1024 + ((r >> 20) % 64000)));
      udp->dest = htons(static_cast<uint16_t>(1024 + ((r >> 40) % 64000)));
    }
    int k = sendmmsg(fd, msgs, kBatch, 0);
    if (k > 0) sent += static_cast<uint64_t>(k);
  }
  close(fd);
  return sent;
}

uint64_t sinkCount(lab::Lab& lab) {
  auto j = nlohmann::json::parse(lab.exec(lab.outside(), "nft -j list counter inet bsink rx"));
  for (const auto& item : j["nftables"])
    if (item.contains("counter")) return item["counter"]["packets"].get<uint64_t>();
  return 0;
}

void clearGateway(lab::Lab& lab) {
  lab::run("ip netns exec " + lab.gw() + " nft delete table inet nsegress");
  lab::run("ip netns exec " + lab.gw() + " nft delete table inet ctonly");
  lab::run("ip netns exec " + lab.gw() + " iptables-nft -t nat -F");
  lab::run("ip netns exec " + lab.gw() + " iptables-legacy -t nat -F");
}

void program(lab::Lab& lab, const std::string& variant, int n) {
  clearGateway(lab);
  if (variant == "nsegress") {
    DesiredState d;
    for (int i = 0; i < n; ++i)
      d.namespaces.push_back({"ns-" + std::to_string(i), egressIp(i), std::nullopt, {podIp(i)}});
    lab::NetnsEnter in(lab.gw());
    auto nft = netlink::NftTable::open({"nsegress", "up0"});
    // Addresses are not needed for one-way traffic; the table is the real one.
    const auto empty = *(*nft)->observe();
    if (!(*nft)->apply(gateway::planTable(empty)) ||
        !(*nft)->apply(gateway::planSnat(d, gateway::ObservedNft{true, true}).main))
      throw std::runtime_error("nft apply");
  } else if (variant == "conntrack-only") {
    std::ofstream f(lab.dir() + "/ct.nft");
    f << "table inet ctonly {\n chain ctfw { type filter hook forward priority 0;\n  ct state new "
         "counter\n }\n}\n";
    f.close();
    lab.exec(lab.gw(), "nft -f " + lab.dir() + "/ct.nft");
  } else {
    std::ofstream f(lab.dir() + "/ipt.rules");
    f << "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING "
         "ACCEPT [0:0]\n";
    for (int i = 0; i < n; ++i)
      f << "-A POSTROUTING -s " << podIp(i).str() << "/32 -o up0 -j SNAT --to-source "
        << egressIp(i).str() << "\n";
    f << "COMMIT\n";
    f.close();
    lab.exec(lab.gw(), variant + "-restore " + lab.dir() + "/ipt.rules");
  }
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"new-connection rate benchmark"};
  std::vector<int> ns_counts = {1, 100, 1000, 10000};
  int rounds = 5;
  double duration = 0.3;
  std::string out_dir = "bench/results";
  app.add_option("--namespaces", ns_counts, "values of N");
  app.add_option("--rounds", rounds);
  app.add_option("--seconds", duration, "sending time per trial");
  app.add_option("--out", out_dir);
  CLI11_PARSE(app, argc, argv);

  lab::Lab lab("bconn");
  lab.addPod("gen", "10.0.0.2");
  {
    std::ofstream f(lab.dir() + "/sink.nft");
    f << "table inet bsink {\n counter rx {}\n chain pre { type filter hook prerouting priority "
         "-400;\n"
         "  meta l4proto udp counter name rx drop\n }\n}\n";
  }
  lab.exec(lab.outside(), "nft -f " + lab.dir() + "/sink.nft");
  // No host setting is changed: each trial starts from an empty conntrack
  // table and stays below the default nf_conntrack_max (262144) at these rates.

  std::vector<std::string> variants = {"nsegress", "iptables-nft", "conntrack-only"};
  if (lab::run("ip netns exec " + lab.gw() + " iptables-legacy -t nat -L -n >/dev/null") == 0)
    variants.insert(variants.begin() + 2, "iptables-legacy");

  std::map<int, std::map<std::string, std::vector<double>>> rates;
  std::map<int, std::map<std::string, uint64_t>> lost;
  Xorshift rng;
  for (int n : ns_counts) {
    for (int r = 0; r < rounds; ++r) {
      for (size_t v = 0; v < variants.size(); ++v) {
        const std::string& variant = variants[(v + static_cast<size_t>(r)) % variants.size()];
        program(lab, variant, n);
        lab::run("ip netns exec " + lab.gw() + " conntrack -F");
        const uint64_t c0 = sinkCount(lab);
        uint64_t sent;
        double secs;
        {
          lab::NetnsEnter in(lab.pod("gen"));
          auto t0 = Steady::now();
          sent = generate(n, std::chrono::duration<double>(duration), rng);
          secs = bench::seconds(Steady::now() - t0);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const uint64_t got = sinkCount(lab) - c0;
        rates[n][variant].push_back(static_cast<double>(got) / secs);
        lost[n][variant] += sent - std::min(sent, got);
        std::cerr << "N=" << n << " " << variant << ": " << static_cast<uint64_t>(got / secs)
                  << " conn/s (" << got << "/" << sent << ")\n";
      }
    }
  }
  clearGateway(lab);

  auto k = [](double v) {
    std::ostringstream o;
    o.precision(0);
    o << std::fixed << v / 1000 << "k";
    return o.str();
  };
  auto ratio = [](double a, double b) {
    std::ostringstream o;
    o.precision(2);
    o << std::fixed << (b > 0 ? a / b : 0);
    return o.str();
  };
  std::ostringstream md;
  md << "# Benchmark 1: new-connection rate against the number of namespaces\n\n"
     << bench::machine()
     << ". Every packet is a new UDP flow (random ports), so NAT is consulted "
        "for every packet. Rate = packets counted by the sink's nft counter / sending time; "
     << rounds << " rounds of " << duration
     << " s per variant and N, variant order rotated each round; median (min – max).\n"
        "The generator, the gateway and the sink share the machine's cores (veth processing runs "
        "on the sender's CPU), so absolute rates include their fixed costs; compare ratios.\n\n"
     << "| N |";
  for (const auto& v : variants) md << " " << v << " |";
  md << " nsegress ÷ iptables-nft | nsegress ÷ conntrack-only |\n|---|";
  for (size_t i = 0; i < variants.size() + 2; ++i) md << "---|";
  md << "\n";
  nlohmann::json raw;
  for (int n : ns_counts) {
    md << "| " << n << " |";
    for (const auto& v : variants) {
      auto s = bench::stats(rates[n][v]);
      md << " " << k(s.median) << " (" << k(s.min) << " – " << k(s.max) << ") |";
      raw[std::to_string(n)][v] = {{"rates", rates[n][v]}, {"lost", lost[n][v]}};
    }
    md << " "
       << ratio(bench::stats(rates[n]["nsegress"]).median,
                bench::stats(rates[n]["iptables-nft"]).median)
       << " | "
       << ratio(bench::stats(rates[n]["nsegress"]).median,
                bench::stats(rates[n]["conntrack-only"]).median)
       << " |\n";
  }
  const double n1 = bench::stats(rates[ns_counts.front()]["nsegress"]).median;
  const double nk = bench::stats(rates[ns_counts.back()]["nsegress"]).median;
  md << "\nFlatness: nsegress at N=" << ns_counts.back() << " ÷ N=" << ns_counts.front() << " = "
     << ratio(nk, n1)
     << " (goal ≥ 0.9). Goals (PERFORMANCE.md #1): ≥ 10× iptables-linear at N=10k, "
        "≥ 0.8× conntrack-only.\n";
  std::cout << md.str();
  bench::writeFile(out_dir + "/conn_rate.md", md.str());
  raw["machine"] = bench::machine();
  bench::writeFile(out_dir + "/conn_rate.json", raw.dump(2) + "\n");
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);  // the lab's destructor removes its namespaces on any exit
  } catch (const std::exception& e) {
    std::cerr << "benchmark failed: " << e.what() << "\n";
    return 1;
  }
}
