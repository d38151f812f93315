// Benchmark 7: conntrack event intake without loss — the flow log's reader
// (its own socket, NEW and DESTROY only, a 40 MiB buffer, a thread writing
// records to segment files) against bursts of source-NATed flows created
// and destroyed as fast as ctnetlink allows, in a network namespace of the
// benchmark's own (unshare: nothing of the host is touched).
//
// In the same run: the peer (the same reader with the kernel's default
// ~208 KB socket buffer, as kindling#87 and conntrackd's defaults had) and
// the limit (the generator alone, no reader: events the kernel can produce).
// Reports events/s logged, events lost (ENOBUFS overruns, each counted and
// followed by a resync) and the ratio to the limit.
#include <sched.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "nsegress/gateway/flow_log.h"
#include "nsegress/netlink/conntrack.h"
#include "nsegress/netlink/ct_sync.h"

using namespace nsegress;
namespace fs = std::filesystem;

namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// `n` distinct UDP flows of pods 10.64.x.y to 192.0.2.1:53, SNATed to
// 203.0.113.10 on distinct ports (spread over 4 destination ports).
std::vector<ctsync::Flow> flows(size_t n) {
  std::vector<ctsync::Flow> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    ctsync::Flow f;
    f.proto = 17;
    const uint32_t pod = (10u << 24) | (64u << 16) | static_cast<uint32_t>(i / 60000 + 1);
    uint8_t b[4] = {uint8_t(pod >> 24), uint8_t(pod >> 16), uint8_t(pod >> 8), uint8_t(pod)};
    f.src = IpAddress::fromBytes(Family::V4, b);
    f.sport = static_cast<uint16_t>(1024 + i % 60000);
    f.dst = *IpAddress::parse("192.0.2.1");
    f.dport = static_cast<uint16_t>(53 + (i / 60000) % 4);
    f.egress = *IpAddress::parse("203.0.113.10");
    f.nat_port = static_cast<uint16_t>(1024 + i % 60000);
    out.push_back(f);
  }
  return out;
}

struct Round {
  std::string reader;  // "flow log (40 MiB)", "default buffer (208 KB)", "none (limit)"
  size_t flows = 0;
  double seconds = 0;        // generation: create all, then destroy all
  uint64_t generated = 0;    // events the kernel produced (2 per flow)
  uint64_t logged = 0;       // records N + D written
  uint64_t losses = 0;       // ENOBUFS overruns
  uint64_t listed = 0;       // flows re-listed by resyncs after losses
  double drain_seconds = 0;  // from the end of generation until the reader caught up
};

Round runOnce(size_t n, int rcvbuf, bool reader, const std::string& dir) {
  Round r;
  r.flows = n;
  std::unique_ptr<netlink::ConntrackSync> events;
  std::unique_ptr<gateway::FlowLog> log;
  if (reader) {
    fs::remove_all(dir);
    auto k = netlink::ConntrackSync::open(rcvbuf, /*updates=*/false);
    if (!k) throw std::runtime_error(k.error().message);
    events = std::move(*k);
    gateway::FlowLogOptions o;
    o.dir = dir;
    o.node = "bench";
    log = std::make_unique<gateway::FlowLog>(o, *events, nowMs);
    DesiredState d;
    NamespaceEgress e;
    e.name = "bench";
    e.egress_v4 = *IpAddress::parse("203.0.113.10");
    d.namespaces.push_back(e);
    log->setState(d);
    if (auto s = log->start(); !s) throw std::runtime_error(s.error().message);
  }
  auto gen = netlink::ConntrackSync::open(1 << 20, false);
  if (!gen) throw std::runtime_error(gen.error().message);
  auto ct = netlink::Conntrack::open();
  if (!ct) throw std::runtime_error(ct.error().message);
  const auto all = flows(n);
  const auto t0 = std::chrono::steady_clock::now();
  auto c = (*gen)->commit(all);
  if (!c) throw std::runtime_error(c.error().message);
  auto d = (*ct)->flush(gateway::ConntrackFlush{"bench", *IpAddress::parse("203.0.113.10"), {}});
  if (!d) throw std::runtime_error(d.error().message);
  const auto t1 = std::chrono::steady_clock::now();
  r.seconds = bench::seconds(t1 - t0);
  r.generated = c->created + *d;
  if (log) {
    // Until every event is logged or a loss was resynced and nothing moves.
    uint64_t last = 0;
    auto still = std::chrono::steady_clock::now();
    while (true) {
      const auto& s = log->stats();
      const uint64_t got = s.new_flows + s.ended_flows;
      if (got >= r.generated) break;
      if (got != last) {
        last = got;
        still = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - still > std::chrono::seconds(2)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // Until the last record written (a stalled reader: its last progress).
    r.drain_seconds = std::max(0.0, bench::seconds(still - t1));
    if (log->stats().new_flows + log->stats().ended_flows >= r.generated)
      r.drain_seconds = bench::seconds(std::chrono::steady_clock::now() - t1);
    log->stop();
    r.logged = log->stats().new_flows + log->stats().ended_flows;
    r.losses = log->stats().losses;
    r.listed = log->stats().listed_flows;
  }
  r.reader = !reader               ? "none (the limit)"
             : rcvbuf >= (8 << 20) ? "flow log, 40 MiB buffer"
                                   : "flow log, default 208 KB buffer (the peer)";
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmark 7: conntrack event intake (the flow log)"};
  size_t n = 200000;
  int rounds = 3;
  std::string out = "bench/results";
  app.add_option("--flows", n, "Flows per round (each: one NEW and one DESTROY event)");
  app.add_option("--rounds", rounds);
  app.add_option("--out", out);
  CLI11_PARSE(app, argc, argv);
  try {
    if (unshare(CLONE_NEWNET) != 0) throw std::runtime_error("unshare(CLONE_NEWNET): needs root");
    const std::string dir =
        fs::temp_directory_path() / ("nsegress-bench-flows-" + std::to_string(getpid()));
    nlohmann::json raw = nlohmann::json::array();
    std::vector<Round> all;
    for (int i = 0; i < rounds; ++i)
      for (auto [buf, reader] :
           {std::pair{0, false}, std::pair{40 << 20, true}, std::pair{208 << 10, true}}) {
        auto r = runOnce(n, buf, reader, dir);
        std::cerr << r.reader << ": " << r.generated << " events in " << r.seconds << " s, logged "
                  << r.logged << ", losses " << r.losses << "\n";
        all.push_back(r);
        raw.push_back({{"reader", r.reader},
                       {"flows", r.flows},
                       {"seconds", r.seconds},
                       {"generated", r.generated},
                       {"logged", r.logged},
                       {"losses", r.losses},
                       {"listed_by_resync", r.listed},
                       {"drain_seconds", r.drain_seconds}});
      }
    fs::remove_all(dir);
    std::map<std::string, std::vector<double>> rate, lost_share, drain, logged_rate;
    std::map<std::string, uint64_t> losses;
    for (const auto& r : all) {
      rate[r.reader].push_back(r.generated / r.seconds);
      if (r.reader.rfind("none", 0) != 0) {
        lost_share[r.reader].push_back(1.0 - static_cast<double>(r.logged) /
                                                 static_cast<double>(r.generated));
        drain[r.reader].push_back(r.drain_seconds);
        logged_rate[r.reader].push_back(r.logged / (r.seconds + r.drain_seconds));
        losses[r.reader] += r.losses;
      }
    }
    const double limit = bench::stats(rate["none (the limit)"]).median;
    std::ostringstream md;
    md << "# Benchmark 7: conntrack event intake (the flow log)\n\n"
       << bench::machine() << ". " << rounds << " rounds of " << n
       << " UDP flows SNATed to one address, created through ctnetlink as fast as it goes, then "
          "destroyed (one NEW and one DESTROY event each), in a network namespace of the "
          "benchmark's own. The flow log reads NEW and DESTROY only, on its own thread, and "
          "writes a record per event to its segment file. Median of the rounds; `bench/run.sh "
          "ct_events`.\n\n"
       << "| reader | events/s produced | vs the limit | events/s logged | events lost (share) | "
          "ENOBUFS overruns | last record after the burst |\n|---|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& name : {"none (the limit)", "flow log, 40 MiB buffer",
                             "flow log, default 208 KB buffer (the peer)"}) {
      const double v = bench::stats(rate[name]).median;
      md << "| " << name << " | " << static_cast<long>(v) << " | " << std::fixed
         << std::setprecision(2) << v / limit << " | ";
      if (lost_share.count(name))
        md << static_cast<long>(bench::stats(logged_rate[name]).median) << " | "
           << std::setprecision(4) << bench::stats(lost_share[name]).median * 100 << " % | "
           << losses[name] << " | " << std::setprecision(2) << bench::stats(drain[name]).median
           << " s |\n";
      else
        md << "- | - | - | - |\n";
      md.unsetf(std::ios::fixed);
    }
    md << "\nEvents lost are events the kernel dropped before the reader read them; each "
          "overrun is counted (nsegress_gateway_flow_log_losses_total), marked in the log (L) and "
          "followed by a resync that lists the flows then alive (E), so a question about a "
          "flow alive at the resync is still answered; a flow that began and ended inside the "
          "overrun is not.\n";
    bench::writeFile(out + "/ct_events.md", md.str());
    bench::writeFile(out + "/ct_events.json", raw.dump(2) + "\n");
    std::cout << md.str();
  } catch (const std::exception& e) {
    std::cerr << "bench_ct_events: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
