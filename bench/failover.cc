// Benchmark 5: failover, in the cluster lab (tests/lab/lab.h): two gateways,
// two workers, the standalone controller as lease server, every agent with
// --peer-key. Each cycle: long-lived flows from a pod on each worker
// (client-talk TCP, download-only TCP, UDP; both pods bind the same source
// ports, so the kernel remaps one of each pair on the shared address) and a
// probe (a new UDP flow every 10 ms from pay-w1); 1.5 s in, the owner of the
// namespace's address fails:
//
//   kill -9     the owner's agent killed and its links cut (the node is gone)
//   uplink cut  the far end of the owner's uplink goes down (node and agent live)
//   drain       nsegressctl drain OWNER (planned)
//
// Then the failed node is restored and the next cycle fails the new owner.
// Reported: the probe's gap (median, p99, max), probes lost, and the share
// of established flows of each kind that survived (same address and port);
// with conntrack sync, and for kill -9 also without it. Also the sync's
// sender-side lag (the owner's nsegress_gateway_ct_sync_lag_seconds).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "flood.h"
#include "lab.h"

using namespace nsegress;

namespace {

int restore_wait_ms = 2500;

std::string fmt(double v, int prec = 0) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(prec);
  o << v;
  return o.str();
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

struct Result {
  std::vector<double> gaps;
  std::vector<double> lost;
  std::map<std::string, std::pair<int, int>> survived;  // kind → (ok, total)
  std::vector<double> lag_p99_ms;
};

class Bench {
 public:
  Bench(const std::string& scenario, bool sync) : scenario_(scenario), sync_(sync) {
    lab_ = std::make_unique<lab::Lab>("bfo", lab::ClusterOptions{});
    lab_->addPodOn("w1", "pay-w1", "10.244.3.2", "fd00:244:3::2");
    lab_->addPodOn("w2", "pay-w2", "10.244.4.2", "fd00:244:4::2");
    key_ = lab_->prepareFailover({{"pay-w1", "w1", "10.244.3.2"}, {"pay-w2", "w2", "10.244.4.2"}});
    lab_->startServers();
    lab_->startController({"--lease-listen", "192.0.2.1:4795", "--peer-key", key_});
    for (const char* n : lab::Lab::kNodes) start(n);
    if (!lab::eventually([&] { return !ownerOf().empty(); }, std::chrono::seconds(30)))
      throw std::runtime_error("lab not ready");
    std::this_thread::sleep_for(std::chrono::seconds(3));  // quiet periods, first syncs
  }

  void start(const std::string& n) {
    std::vector<std::string> args = {"--node-name",       n,
                                     "--peer-key",        key_,
                                     "--lease-server",    "192.0.2.1:4795",
                                     "--metrics-address", "127.0.0.1:9100"};
    if (!sync_) args.push_back("--no-ct-sync");
    agents_[n] = &lab_->startNodeAgent(n, args);
  }

  std::string ownerOf() {
    std::ifstream in(lab_->nodeStatePath("w1"));
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      auto s = nlohmann::json::parse(ss.str());
      return s.at("addresses").at(0).at("owner").get<std::string>();
    } catch (...) {
      return "";
    }
  }

  // The owner's sync lag p99 (ms) from its metrics, 0 if none observed.
  double lagP99(const std::string& node) {
    const auto text = lab_->exec(lab_->node(node), "curl -s http://127.0.0.1:9100/metrics");
    static const std::regex re(
        R"re(nsegress_gateway_ct_sync_lag_seconds_bucket\{le="([^"]+)"\} (\d+))re");
    std::vector<std::pair<double, double>> buckets;
    for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) {
      const std::string le = (*it)[1];
      buckets.emplace_back(le == "+Inf" ? 1e9 : std::stod(le), std::stod((*it)[2]));
    }
    if (buckets.empty() || buckets.back().second == 0) return 0;
    const double want = 0.99 * buckets.back().second;
    for (const auto& [le, n] : buckets)
      if (n >= want) return le * 1000;
    return 0;
  }

  // New flows per second through the owner (raw UDP from pay-w1, every
  // packet a new flow, steered to the owner and SNATed there), with the
  // owner's sync lag p99 after it.
  std::pair<double, double> flood(double secs) {
    if (!sink_) bench::installSink(*lab_), sink_ = true;
    const std::string owner = ownerOf();
    lab_->exec(lab_->node(owner), "conntrack -F");
    lab_->exec(lab_->node("w1"), "conntrack -F");
    const uint64_t before = bench::sinkCount(*lab_);
    {
      lab::NetnsEnter in(lab_->pod("pay-w1"));
      bench::generate("10.244.3.2", secs);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const double rate = static_cast<double>(bench::sinkCount(*lab_) - before) / secs;
    return {rate, sync_ ? lagP99(owner) : 0};
  }

  void cycle(int c, Result& r) {
    const std::string owner = ownerOf();
    const std::string standby = owner == "gw1" ? "gw2" : "gw1";
    const std::string tag = "p" + std::to_string(c);
    const int base = 41000 + (c % 40) * 40;
    std::vector<std::string> outputs(2);
    std::vector<std::thread> clients;
    for (size_t i = 0; i < 2; ++i)
      clients.emplace_back([&, i] {
        outputs[i] =
            lab_->exec(lab_->pod(i == 0 ? "pay-w1" : "pay-w2"),
                       lab::labtoolPath() + " streams --dst " + std::string(lab::Lab::kOutsideIp) +
                           " --talk 5 --down 5 --udp 4 --seconds 5 --base-port " +
                           std::to_string(base) + " 2>&1");
      });
    constexpr int kProbes = 400;
    std::thread prober([&] { lab_->send("pay-w1", "udp", tag, kProbes, 10, true, 100); });
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    if (sync_) r.lag_p99_ms.push_back(lagP99(owner));
    if (scenario_ == "kill") {
      agents_[owner]->signal(SIGKILL);
      lab_->exec(lab_->node(owner), "ip link set up0 down; ip link set eth0 down");
    } else if (scenario_ == "uplink") {
      lab_->exec(lab_->outside(), "ip link set u-" + owner + " down");
    } else {
      lab_->ctl("drain " + owner);
    }
    prober.join();
    for (auto& t : clients) t.join();
    // The probe's longest run of missing packets.
    std::vector<bool> got(kProbes, false);
    for (const auto& l : lab_->serverLines()) {
      std::istringstream in(l);
      std::string proto, peer, t;
      int seq = -1;
      in >> proto >> peer >> t >> seq;
      if (t == tag && seq >= 0 && seq < kProbes) got[static_cast<size_t>(seq)] = true;
    }
    int run = 0, worst = 0, lost = 0;
    for (bool g : got) {
      run = g ? 0 : run + 1;
      worst = std::max(worst, run);
      lost += !g;
    }
    r.gaps.push_back(worst * 10.0);
    r.lost.push_back(lost);
    static const std::regex line(R"(^(talk|down|udp) (\d+)/(\d+) gap (\d+)$)");
    for (const auto& out : outputs) {
      std::istringstream in(out);
      for (std::string l; std::getline(in, l);) {
        std::smatch m;
        if (!std::regex_match(l, m, line)) continue;
        r.survived[m[1]].first += std::stoi(m[2]);
        r.survived[m[1]].second += std::stoi(m[3]);
      }
    }
    std::cout << scenario_ << (sync_ ? "" : " (no sync)") << " cycle " << c << ": " << owner
              << " -> " << standby << ", gap " << worst * 10 << " ms, lost " << lost << std::endl;
    // Restore the failed node; it stands by for the next cycle.
    if (scenario_ == "kill") {
      lab_->exec(lab_->node(owner), "ip link set up0 up; ip link set eth0 up");
      start(owner);
    } else if (scenario_ == "uplink") {
      lab_->exec(lab_->outside(), "ip link set u-" + owner + " up");
    } else {
      lab_->ctl("undrain " + owner);
    }
    lab::eventually([&] { return ownerOf() == standby; }, std::chrono::seconds(10));
    std::this_thread::sleep_for(
        std::chrono::milliseconds(restore_wait_ms));  // quiet period, resync
  }

 private:
  std::string scenario_;
  bool sync_;
  std::unique_ptr<lab::Lab> lab_;
  std::string key_;
  std::map<std::string, lab::Process*> agents_;
  bool sink_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"failover benchmark"};
  int cycles = 50, nosync_cycles = 10, cost_rounds = 3;
  std::string out_dir = "bench/results";
  std::vector<std::string> scenarios = {"kill", "uplink", "drain"};
  app.add_option("--cycles", cycles, "failovers per scenario (with sync)");
  app.add_option("--nosync-cycles", nosync_cycles, "kill -9 failovers without sync");
  app.add_option("--scenarios", scenarios);
  app.add_option("--cost-rounds", cost_rounds, "rounds of 1 s of new flows, sync on and off");
  app.add_option("--out", out_dir);
  app.add_option("--restore-wait-ms", restore_wait_ms,
                 "after restoring a node, before the next cycle");
  CLI11_PARSE(app, argc, argv);
  if (geteuid() != 0) {
    std::cerr << "needs root (network namespaces)\n";
    return 2;
  }
  lab::cleanupAll();
  std::vector<std::tuple<std::string, bool, int>> runs;
  for (const auto& s : scenarios) runs.emplace_back(s, true, cycles);
  if (nosync_cycles > 0) runs.emplace_back("kill", false, nosync_cycles);
  std::ostringstream md;
  nlohmann::json raw;
  md << "# Benchmark 5: failover\n\n"
     << bench::machine() << "; `bench/run.sh failover`.\n\n"
     << "Cluster lab: two gateways, two workers, the standalone controller as lease server "
        "(lease 500 ms, standby promise 500 ms, heartbeat 50 ms). Each cycle, from one pod on "
        "each worker: 5 client-talk TCP flows (a line every 20 ms), 5 download-only TCP flows "
        "(the server pushes every 10 ms; the pod only acknowledges) and 4 UDP flows (the server "
        "answers with the address:port it saw; a change counts as lost), the two pods binding "
        "the same source ports (the kernel remaps one of each pair on the shared address); and a "
        "probe: a new UDP flow every 10 ms. 1.5 s in, the owner fails; the next cycle fails the "
        "new owner. Gap: the longest run of probes that did not arrive, in ms (10 ms "
        "resolution). Survived: the flow never failed, received data in its last second, and "
        "(UDP) the server saw one address:port throughout.\n\n"
     << "| scenario | conntrack sync | failovers | gap median | gap p99 | gap max | probes lost "
        "(median) | talk TCP survived | download TCP survived | UDP survived |\n"
     << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::vector<double> lags;
  for (const auto& [s, sync, n] : runs) {
    Result r;
    {
      Bench b(s, sync);
      for (int c = 0; c < n; ++c) b.cycle(c, r);
    }
    auto pct = [&](const char* k) {
      auto [ok, total] = r.survived[k];
      return fmt(total ? 100.0 * ok / total : 0, 1) + " % (" + std::to_string(ok) + "/" +
             std::to_string(total) + ")";
    };
    const std::string name = s == "kill"     ? "kill -9 + node lost"
                             : s == "uplink" ? "uplink cut"
                                             : "drain (planned)";
    md << "| " << name << " | " << (sync ? "on" : "off") << " | " << n << " | "
       << fmt(bench::stats(r.gaps).median) << " ms | " << fmt(percentile(r.gaps, 0.99)) << " ms | "
       << fmt(bench::stats(r.gaps).max) << " ms | " << fmt(bench::stats(r.lost).median) << " | "
       << pct("talk") << " | " << pct("down") << " | " << pct("udp") << " |\n";
    raw[name + (sync ? "" : " (no sync)")] = {
        {"gaps_ms", r.gaps}, {"lost", r.lost}, {"survived", r.survived}};
    lags.insert(lags.end(), r.lag_p99_ms.begin(), r.lag_p99_ms.end());
  }
  md << "\nPeers (PERFORMANCE.md, benchmark 5): Cilium OSS none (minutes); Calico Enterprise "
        "15-90 s; spidernet 10-15 s; OVN-Kubernetes 5-11 s; Antrea a few seconds; Kube-OVN "
        "about 3 s; none keeps an established connection.\n";
  if (!lags.empty())
    md << "\nConntrack sync, sender side (event read to datagram sent), p99 per owner sampled "
          "each cycle: median "
       << fmt(bench::stats(lags).median, 1) << " ms, max " << fmt(bench::stats(lags).max, 1)
       << " ms (the histogram's bucket bounds; the flows here are few, see the note).\n";
  raw["sync_lag_p99_ms"] = lags;
  if (cost_rounds > 0) {
    std::map<bool, std::vector<double>> rates, flood_lags;
    for (bool sync : {true, false}) {
      Bench b("kill", sync);
      for (int i = 0; i < cost_rounds; ++i) {
        auto [rate, lag] = b.flood(1.0);
        rates[sync].push_back(rate);
        if (sync) flood_lags[sync].push_back(lag);
      }
    }
    const double on = bench::stats(rates[true]).median, off = bench::stats(rates[false]).median;
    md << "\nThe sync's cost: new flows per second through the owner (raw UDP from a pod on a "
          "worker, every packet a new flow: conntrack, steering, SNAT, and with sync one NEW and "
          "one DESTROY event each to read, filter, batch and send), median of "
       << cost_rounds
       << " rounds of 1 s:\n\n| conntrack sync | new flows/s | vs off | owner's "
          "sync lag p99 after the burst |\n|---|---:|---:|---:|\n"
       << "| off | " << fmt(off) << " | 1.00 | - |\n"
       << "| on | " << fmt(on) << " | " << fmt(off > 0 ? on / off : 0, 2) << " | "
       << fmt(bench::stats(flood_lags[true]).max, 0) << " ms |\n";
    raw["new_flows_per_s"] = {{"sync_on", rates[true]}, {"sync_off", rates[false]}};
    raw["flood_sync_lag_p99_ms"] = flood_lags[true];
  }
  std::cout << md.str();
  bench::writeFile(out_dir + "/failover.md", md.str());
  bench::writeFile(out_dir + "/failover.json", raw.dump(2) + "\n");
  return 0;
}
