// Benchmark 9: firewall feeds over TLS with 1,000 polling clients. A real
// nsegress-controller (standalone, loopback, TLS listener, basic-auth
// credentials, 200 namespaces in 4 pools) is polled by 1,000 concurrent
// clients on keep-alive TLS connections: full answers, then conditional
// requests answered 304, then a new TLS connection per poll (a firewall
// that does not keep connections), and plain HTTP full answers as the
// limit without TLS. Reports requests/s, latency percentiles, fairness
// (answers per client: the fewest vs the median) and the controller's idle
// cost (CPU over 10 s, RSS).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "test_certs.h"

namespace fs = std::filesystem;
namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Phase {
  std::string name;
  bool tls = true;
  bool conditional = false;  // If-None-Match: the ETag of the first answer
  bool reconnect = false;    // a new connection (and TLS handshake) per poll
};

struct Result {
  std::string name;
  double rps = 0, p50_ms = 0, p99_ms = 0;
  uint64_t requests = 0, errors = 0;
  double fewest = 0, median_per_client = 0;
  uint64_t starved = 0;  // clients without an answer in the window
};

struct Load {
  net::io_context io;
  ssl::context ctx{ssl::context::tls_client};
  tcp::endpoint ep;
  std::string auth, etag, target;
  Phase phase;
  Clock::time_point end;
  std::vector<uint64_t> per_client;
  std::vector<double> latencies_ms;
  uint64_t errors = 0;
};

// One polling client: (connect, handshake,) request, read, repeat.
template <typename Stream>
struct Client : std::enable_shared_from_this<Client<Stream>> {
  Load& L;
  size_t id;
  std::optional<Stream> s;
  beast::flat_buffer buf;
  bhttp::request<bhttp::empty_body> req;
  std::optional<bhttp::response<bhttp::string_body>> res;
  Clock::time_point sent;
  Client(Load& l, size_t i) : L(l), id(i) {
    req = {bhttp::verb::get, L.target, 11};
    req.set(bhttp::field::host, "localhost");
    req.set(bhttp::field::authorization, L.auth);
    if (L.phase.conditional) req.set(bhttp::field::if_none_match, L.etag);
    req.keep_alive(!L.phase.reconnect);
  }
  void connect() {
    if (Clock::now() >= L.end) return;
    buf.clear();
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      s.emplace(L.io);
    } else {
      s.emplace(L.io, L.ctx);
    }
    beast::get_lowest_layer(*s).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(*s).async_connect(
        L.ep, [self = this->shared_from_this()](beast::error_code ec) {
          if (ec) return self->fail();
          if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            self->send();
          } else {
            self->s->async_handshake(ssl::stream_base::client, [self](beast::error_code e) {
              if (e) return self->fail();
              self->send();
            });
          }
        });
  }
  void fail() {
    L.errors++;
    // Back off a little, then start over on a new connection.
    auto t = std::make_shared<net::steady_timer>(L.io, std::chrono::milliseconds(100));
    t->async_wait([self = this->shared_from_this(), t](beast::error_code) { self->connect(); });
  }
  void send() {
    if (Clock::now() >= L.end) return;
    sent = Clock::now();
    beast::get_lowest_layer(*s).expires_after(std::chrono::seconds(30));
    bhttp::async_write(*s, req, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->fail();
      self->res.emplace();
      bhttp::async_read(*self->s, self->buf, *self->res,
                        [self](beast::error_code e, size_t) { self->onRead(e); });
    });
  }
  void onRead(beast::error_code ec) {
    if (ec) return fail();
    const int st = res->result_int();
    if (st != (L.phase.conditional ? 304 : 200)) return fail();
    L.per_client[id]++;
    L.latencies_ms.push_back(nsegress::bench::seconds(Clock::now() - sent) * 1000);
    if (L.phase.reconnect) {
      beast::error_code ignored;
      beast::get_lowest_layer(*s).socket().shutdown(tcp::socket::shutdown_both, ignored);
      return connect();
    }
    send();
  }
};

Result run(const Phase& ph, uint16_t port, size_t clients, double secs, const std::string& ca,
           const std::string& auth, const std::string& etag, const std::string& target) {
  Load L;
  L.phase = ph;
  L.ep = {net::ip::make_address("127.0.0.1"), port};
  L.auth = auth;
  L.etag = etag;
  L.target = target;
  L.ctx.add_certificate_authority(net::buffer(ca));
  L.ctx.set_verify_mode(ssl::verify_peer);
  L.per_client.assign(clients, 0);
  // Clients start over the first second (a herd of firewalls does not
  // connect in one instant); the measured window follows.
  const auto start = Clock::now();
  L.end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs + 1));
  for (size_t i = 0; i < clients; ++i) {
    auto t = std::make_shared<net::steady_timer>(
        L.io, std::chrono::microseconds(i * 1'000'000 / clients));
    t->async_wait([&L, i, t, tls = ph.tls](beast::error_code) {
      if (tls)
        std::make_shared<Client<beast::ssl_stream<beast::tcp_stream>>>(L, i)->connect();
      else
        std::make_shared<Client<beast::tcp_stream>>(L, i)->connect();
    });
  }
  // Count only the window after the ramp.
  uint64_t at_ramp = 0;
  std::vector<uint64_t> per_at_ramp;
  net::steady_timer ramp(L.io, std::chrono::seconds(1));
  ramp.async_wait([&](beast::error_code) {
    for (auto n : L.per_client) at_ramp += n;
    per_at_ramp = L.per_client;
    L.latencies_ms.clear();
  });
  L.io.run_for(std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::duration<double>(secs + 1.5)));
  Result r;
  r.name = ph.name;
  uint64_t total = 0;
  std::vector<double> per;
  for (size_t i = 0; i < clients; ++i) {
    const uint64_t n = L.per_client[i] - (per_at_ramp.empty() ? 0 : per_at_ramp[i]);
    total += n;
    per.push_back(static_cast<double>(n));
  }
  r.requests = total;
  r.errors = L.errors;
  r.rps = static_cast<double>(total) / secs;
  auto lat = L.latencies_ms;
  std::sort(lat.begin(), lat.end());
  if (!lat.empty()) {
    r.p50_ms = lat[lat.size() / 2];
    r.p99_ms = lat[lat.size() * 99 / 100];
  }
  r.starved = static_cast<uint64_t>(std::count(per.begin(), per.end(), 0.0));
  auto ps = nsegress::bench::stats(per);
  r.fewest = ps.min;
  r.median_per_client = ps.median;
  return r;
}

// utime+stime (ticks) and RSS (kB) of a process.
std::pair<double, double> cpuAndRss(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(st)), {});
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string x; in >> x;) f.push_back(x);
  const double ticks = std::stod(f[11]) + std::stod(f[12]);
  std::ifstream sm("/proc/" + std::to_string(pid) + "/status");
  double rss = 0;
  for (std::string line; std::getline(sm, line);)
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stod(line.substr(6));
  return {ticks / static_cast<double>(sysconf(_SC_CLK_TCK)), rss};
}

std::string fetchEtag(uint16_t port, const std::string& ca, const std::string& auth,
                      const std::string& target, size_t* bytes, size_t* lines) {
  net::io_context io;
  ssl::context ctx(ssl::context::tls_client);
  ctx.add_certificate_authority(net::buffer(ca));
  beast::ssl_stream<beast::tcp_stream> s(io, ctx);
  beast::get_lowest_layer(s).connect({net::ip::make_address("127.0.0.1"), port});
  s.handshake(ssl::stream_base::client);
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, "localhost");
  req.set(bhttp::field::authorization, auth);
  bhttp::write(s, req);
  beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  if (res.result_int() != 200)
    throw std::runtime_error("feed answered " + std::to_string(res.result_int()));
  *bytes = res.body().size();
  *lines = static_cast<size_t>(std::count(res.body().begin(), res.body().end(), '\n'));
  return std::string(res[bhttp::field::etag]);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_feeds: firewall feeds over TLS with many polling clients"};
  size_t clients = 1000, namespaces = 20000;
  double secs = 5;
  std::string out = "bench/results", controller = NSEGRESS_CONTROLLER_BIN;
  app.add_option("--clients", clients);
  app.add_option("--namespaces", namespaces);
  app.add_option("--seconds", secs);
  app.add_option("--out", out);
  app.add_option("--controller", controller);
  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);

  const fs::path dir =
      fs::temp_directory_path() / ("nsegress-bench-feeds-" + std::to_string(getpid()));
  fs::create_directories(dir / "manifests");
  nsegress::testing::TestCa ca;
  auto cert = ca.issue("localhost");
  nsegress::testing::writeText((dir / "cert.pem").string(), cert.cert);
  nsegress::testing::writeText((dir / "key.pem").string(), cert.key);
  nsegress::testing::writeText((dir / "auth.yaml").string(),
                               "principals:\n  - {name: panorama, password: 'bench feed secret', "
                               "role: read}\n");
  std::ostringstream m;
  for (int p = 0; p < 4; ++p)
    m << "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: pool" << p
      << "}\nspec: {addresses: [\"10." << p << ".0.0/16\"]}\n---\n";
  nsegress::testing::writeText((dir / "manifests" / "pools.yaml").string(), m.str());
  // 1,000 namespaces a file (a file holds at most 10,000 documents).
  for (size_t file = 0; file * 1000 < namespaces; ++file) {
    std::ostringstream n;
    for (size_t i = file * 1000; i < std::min(namespaces, (file + 1) * 1000); ++i)
      n << "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns" << i
        << ", annotations: {nsegress.io/pool: pool" << i % 4 << "}}\n---\n";
    nsegress::testing::writeText(
        (dir / "manifests" / ("ns" + std::to_string(file) + ".yaml")).string(), n.str());
  }
  const uint16_t tls_port = static_cast<uint16_t>(20000 + getpid() % 20000);
  const uint16_t plain_port = tls_port + 1;
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string tl = "127.0.0.1:" + std::to_string(tls_port);
    const std::string pl = "127.0.0.1:" + std::to_string(plain_port);
    const std::string man = (dir / "manifests").string(), led = (dir / "ledger.db").string(),
                      c = (dir / "cert.pem").string(), k = (dir / "key.pem").string(),
                      a = (dir / "auth.yaml").string(), mc = std::to_string(clients * 2);
    execl(controller.c_str(), "nsegress-controller", "--manifests", man.c_str(), "--ledger",
          led.c_str(), "--init-ledger", "--tls-listen", tl.c_str(), "--listen", pl.c_str(),
          "--tls-cert", c.c_str(), "--tls-key", k.c_str(), "--auth-file", a.c_str(),
          "--max-connections-per-peer", mc.c_str(), "--max-requests-per-connection", "1000000",
          "--log-level", "error", nullptr);
    _exit(127);
  }
  const std::string auth = nsegress::testing::basicAuth("panorama", "bench feed secret");
  const std::string target = "/feeds/edl/pool1";
  std::string etag;
  size_t bytes = 0, lines = 0;
  // Until every namespace of the pool is in its feed.
  const size_t want = (namespaces + 2) / 4;
  for (int i = 0; i < 600 && lines < want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    try {
      etag = fetchEtag(tls_port, ca.certPem(), auth, target, &bytes, &lines);
    } catch (const std::exception&) {
    }
  }
  if (lines < want) etag.clear();
  if (etag.empty()) {
    std::cerr << "bench_feeds: the controller never served the feed\n";
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto [cpu0, rss_idle0] = cpuAndRss(pid);
  std::this_thread::sleep_for(std::chrono::seconds(10));
  auto [cpu1, rss_idle] = cpuAndRss(pid);
  const double idle_cpu_pct = (cpu1 - cpu0) / 10 * 100;
  (void)rss_idle0;

  std::vector<Phase> phases = {
      {"TLS, keep-alive, full answer", true, false, false},
      {"TLS, keep-alive, 304", true, true, false},
      {"TLS, new connection per poll, full answer", true, false, true},
      {"plain HTTP, keep-alive, full answer (limit without TLS)", false, false, false}};
  std::vector<Result> results;
  for (const auto& ph : phases) {
    results.push_back(
        run(ph, ph.tls ? tls_port : plain_port, clients, secs, ca.certPem(), auth, etag, target));
    const auto& r = results.back();
    std::cerr << r.name << ": " << r.rps << " req/s, p50 " << r.p50_ms << " ms, p99 " << r.p99_ms
              << " ms, fewest per client " << r.fewest << " (median " << r.median_per_client
              << "), starved " << r.starved << ", errors " << r.errors << "\n";
  }
  auto [cpu2, rss_after] = cpuAndRss(pid);
  (void)cpu2;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  fs::remove_all(dir);

  nlohmann::json j{{"machine", nsegress::bench::machine()},
                   {"clients", clients},
                   {"namespaces", namespaces},
                   {"feed_bytes", bytes},
                   {"seconds", secs},
                   {"idle_cpu_percent", idle_cpu_pct},
                   {"idle_rss_kb", rss_idle},
                   {"rss_after_load_kb", rss_after}};
  for (const auto& r : results)
    j["phases"].push_back({{"name", r.name},
                           {"requests_per_second", r.rps},
                           {"p50_ms", r.p50_ms},
                           {"p99_ms", r.p99_ms},
                           {"requests", r.requests},
                           {"errors", r.errors},
                           {"fewest_answers_per_client", r.fewest},
                           {"median_answers_per_client", r.median_per_client}});
  const double ratio = results[1].rps / std::max(1.0, results[0].rps);
  const double tls_cost = results[0].rps / std::max(1.0, results[3].rps);
  j["ratio_304_to_full"] = ratio;
  j["ratio_tls_to_plain"] = tls_cost;
  std::ostringstream md;
  md << "# Benchmark 9: firewall feeds over TLS\n\n"
     << nsegress::bench::machine() << ". " << clients
     << " concurrent polling clients (one process, one thread, on the same cores as "
     << "the controller), " << namespaces << " namespaces in 4 pools, the polled EDL is " << bytes
     << " bytes; basic auth on every request; " << secs << " s per phase after a 1 s ramp.\n\n"
     << "| phase | requests/s | p50 ms | p99 ms | fewest answers per client (median) | errors |\n"
     << "|---|---|---|---|---|---|\n";
  for (const auto& r : results)
    md << "| " << r.name << " | " << static_cast<long>(r.rps) << " | " << r.p50_ms << " | "
       << r.p99_ms << " | " << r.fewest << " (" << r.median_per_client << ") | " << r.errors
       << " |\n";
  md << "\n304 / full: **" << ratio
     << "×** (goal ≥ 10×). TLS / plain HTTP (full answers): " << tls_cost
     << "×.\n\nIdle controller (no poller): " << idle_cpu_pct << " % of a core over 10 s, RSS "
     << rss_idle / 1024 << " MB; RSS after the load " << rss_after / 1024 << " MB.\n\n"
     << "A firewall polls every 10 s to 5 min: at the 304 rate above one controller answers "
     << "every poll of " << static_cast<long>(results[1].rps * 60) << " firewalls polling once a "
     << "minute.\n";
  nsegress::bench::writeFile(out + "/feeds.md", md.str());
  nsegress::bench::writeFile(out + "/feeds.json", j.dump(2) + "\n");
  std::cout << md.str();
  return 0;
}
