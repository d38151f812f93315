// nsegress-controller (standalone mode): objects from a directory of YAML
// manifests, ledger in embedded SQLite, desired state for each gateway written
// as <gateway-state-dir>/<node>.json, HTTP API and feeds.
#include <sys/inotify.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/file.h"
#include "nsegress/common/json.h"
#include "nsegress/common/peer_wire.h"
#include "nsegress/common/reconcile_driver.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/cluster/cluster_mode.h"
#include "nsegress/controller/http.h"
#include "nsegress/controller/lease_service.h"
#include "nsegress/controller/metrics.h"
#include "nsegress/controller/serve.h"
#include "nsegress/controller/webhooks.h"

using namespace nsegress;
using namespace nsegress::controller;

int main(int argc, char** argv) {
  CLI::App app{"nsegress-controller: stable per-namespace egress IPs"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  std::string manifests, ledger_path, state_dir, log_level = "info";
  ServeOptions serve;
  serve.listen = "127.0.0.1:8080";
  int resync_s = 30;
  std::string lease_listen, peer_key_file;
  int lease_ms = 500, promise_ms = 500;
  bool once = false;
  bool kubernetes = false;
  bool init_ledger = false;
  ManifestOptions mo;
  size_t max_manifest_bytes = mo.max_file_bytes;
  int settle_ms = static_cast<int>(mo.settle.count());
  ReleaseGuard guard;
  cluster::ClusterModeOptions km;
  app.add_option("--manifests", manifests, "Standalone: directory of YAML manifests (watched)");
  app.add_option("--ledger", ledger_path, "Standalone: SQLite ledger file");
  app.add_flag("--init-ledger", init_ledger,
               "Standalone: create the ledger if it does not exist (never implicit: a missing or "
               "emptied ledger is otherwise an error)");
  app.add_option("--max-manifest-bytes", max_manifest_bytes,
                 "Standalone: a larger manifest file is refused (its last good objects kept)")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  app.add_option("--manifest-settle-ms", settle_ms,
                 "Standalone: a file changed less than this ago is treated as mid-write (its last "
                 "good objects are used until it is quiet)")
      ->check(CLI::Range(0, 60000));
  app.add_option("--release-guard-min", guard.min_releases,
                 "Hold a reconcile that would release at least this many addresses...");
  app.add_option("--release-guard-fraction", guard.min_fraction,
                 "...and at least this share of the assigned ones, until an operator confirms "
                 "(nsegressctl confirm-release)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--kubernetes", kubernetes,
               "Cluster mode: objects and ledger in the Kubernetes API");
  app.add_option("--kubeconfig", km.kubeconfig,
                 "Cluster mode: kubeconfig (default: $KUBECONFIG, in-cluster)");
  app.add_option("--leader-election-namespace", km.lease_namespace,
                 "Cluster mode: namespace of the Lease");
  app.add_option("--identity", km.identity,
                 "Cluster mode: leader-election identity (default: host-pid)");
  if (const char* p = std::getenv("POD_NAME")) km.pod_name = p;
  app.add_option("--pod-name", km.pod_name, "Cluster mode: this replica's Pod (default $POD_NAME)");
  if (const char* p = std::getenv("POD_IP")) km.pod_ip = p;
  app.add_option("--pod-ip", km.pod_ip,
                 "Cluster mode: this replica's Pod IP (default $POD_IP); while it leads, the "
                 "Endpoints of --service list it alone, so the Service routes readers to it");
  app.add_option("--service", km.service_name,
                 "Cluster mode: the selector-less Service (and Endpoints) readers use");
  app.add_option("--kube-qps", km.qps, "Cluster mode: API requests per second, per client")
      ->check(CLI::Range(1.0, 10000.0));
  app.add_option("--kube-burst", km.burst, "Cluster mode: API request burst, per client")
      ->check(CLI::Range(1.0, 10000.0));
  app.add_option("--lease-duration-ms", km.lease_duration_ms, "Cluster mode: Lease duration")
      ->check(CLI::Range(1000, 600000));
  app.add_option(
         "--renew-deadline-ms", km.renew_deadline_ms,
         "Cluster mode: stop acting if the Lease was not renewed for this long (< lease duration)")
      ->check(CLI::Range(500, 600000));
  app.add_option("--retry-period-ms", km.retry_period_ms,
                 "Cluster mode: Lease acquire/renew period")
      ->check(CLI::Range(100, 60000));
  app.add_option("--listen", serve.listen,
                 "host:port of the plain-HTTP API, feeds and /metrics (empty: off)");
  app.add_option("--tls-listen", serve.tls_listen,
                 "host:port of the HTTPS API and feeds (the same routes; empty: off)");
  app.add_option("--tls-cert", serve.tls.cert,
                 "PEM certificate chain of --tls-listen (reloaded when it changes)");
  app.add_option("--tls-key", serve.tls.key, "PEM private key of --tls-listen (reloaded too)");
  app.add_option("--tls-client-ca", serve.tls.client_ca,
                 "PEM CA bundle: client certificates it signed are verified and name principals "
                 "(certCN in --auth-file)");
  app.add_option("--auth-file", serve.auth_file,
                 "Credentials (basic, bearer, certificate CN; read or write role; optional pools) "
                 "for the feeds and the API, reloaded when the file changes (empty: feeds open, "
                 "changes only from this host)");
  app.add_option("--metrics-listen", serve.metrics_listen,
                 "host:port serving /metrics and /healthz only; /metrics then leaves --listen "
                 "(empty: metrics on --listen)");
  app.add_option("--max-connections", serve.max_connections,
                 "HTTP: open connections per listener (the oldest slow one is closed to make "
                 "room)")
      ->check(CLI::Range(size_t{16}, size_t{1} << 20));
  app.add_option("--max-connections-per-peer", serve.max_per_peer,
                 "HTTP: open connections from one address")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--max-requests-per-connection", serve.max_requests_per_connection,
                 "HTTP: requests on one kept-alive connection")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  WebhookOptions hooks;
  std::string webhook_secret_file;
  app.add_option("--webhook", hooks.urls,
                 "URL notified (POST, JSON) of every ledger change; repeatable");
  app.add_option("--webhook-secret-file", webhook_secret_file,
                 "File holding the HMAC-SHA256 key that signs webhook bodies "
                 "(X-Nsegress-Signature); its first line, without the newline")
      ->check(CLI::ExistingFile);
  app.add_option("--webhook-ca", hooks.ca_file,
                 "PEM CAs for https webhooks (default: the system's)")
      ->check(CLI::ExistingFile);
  app.add_option("--webhook-attempts", hooks.max_attempts,
                 "Attempts per notification before it is a dead letter (1 s backoff, doubling)")
      ->check(CLI::Range(1, 100));
  app.add_option("--gateway-state-dir", state_dir,
                 "Where to write <node>.json desired states for gateways");
  app.add_option("--lease-listen", lease_listen,
                 "Failover: IPv4:port of the lease server gateways renew ownership with (UDP; "
                 "empty: no failover). Cluster mode: the leader listens there and lists the "
                 "port in its Endpoints as \"lease\"");
  app.add_option("--peer-key", peer_key_file,
                 "Failover: file with the key shared by the gateways and the lease server");
  app.add_option("--lease-ms", lease_ms, "Failover: lease length (as the gateways')")
      ->check(CLI::Range(100, 60000));
  app.add_option("--promise-ms", promise_ms, "Failover: a standby's promise (as the gateways')")
      ->check(CLI::Range(100, 60000));
  app.add_option("--resync-seconds", resync_s,
                 "Full reconcile period (quarantine expiry, safety net)")
      ->check(CLI::Range(1, 86400));
  app.add_flag("--once", once, "Reconcile once and exit");
  app.add_option("--log-level", log_level);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ controller: %v");
  if (!webhook_secret_file.empty()) {
    auto f = readFileBounded(webhook_secret_file, 4096);
    if (!f) {
      spdlog::error("--webhook-secret-file: {}", f.error().message);
      return 2;
    }
    hooks.secret = f->text.substr(0, f->text.find('\n'));
    if (!hooks.secret.empty() && hooks.secret.back() == '\r') hooks.secret.pop_back();
    if (hooks.secret.size() < 16) {
      spdlog::error("--webhook-secret-file: the key must be at least 16 bytes");
      return 2;
    }
  }
  if (auto why = serve.check(); !why.empty()) {
    spdlog::error("{}", why);
    return 2;
  }
  for (const auto& u : hooks.urls)
    if (auto url = http::Url::parse(u); !url) {
      spdlog::error("--webhook {}", url.error().message);
      return 2;
    }
  if (!hooks.urls.empty() && hooks.secret.empty())
    spdlog::warn("--webhook without --webhook-secret-file: notifications go out unsigned");
  if (kubernetes) {
    if (!lease_listen.empty()) {
      auto key = ownership::readKeyFile(peer_key_file);
      if (!key) {
        spdlog::error("--peer-key: {}", key.error().message);
        return 2;
      }
      km.lease_listen = lease_listen;
      km.peer_key = *key;
      km.lease_ms = lease_ms;
      km.promise_ms = promise_ms;
    }
    km.serve = serve;
    km.webhooks = hooks;
    km.gateway_state_dir = state_dir;
    km.resync_seconds = resync_s;
    km.guard = guard;
    return cluster::runClusterMode(km);
  }
  mo.max_file_bytes = max_manifest_bytes;
  mo.settle = std::chrono::milliseconds(settle_ms);
  if (manifests.empty() || ledger_path.empty()) {
    spdlog::error("standalone mode needs --manifests and --ledger (or use --kubernetes)");
    return 2;
  }

  auto store = SqliteStore::open(ledger_path, SqliteOptions{init_ledger});
  if (!store) {
    spdlog::error("{}", store.error().message);
    return 1;
  }
  Controller ctl(
      **store, [] { return static_cast<Seconds>(time(nullptr)); }, state_dir, guard);
  if (auto r = ctl.start(); !r) {
    spdlog::error("{}", r.error().message);
    return 1;
  }
  ManifestDirectory dir(manifests, SystemClock::instance(), mo);
  // Nodes drained by nsegressctl drain (kept across restarts).
  std::mutex drained_mu;
  std::set<std::string> drained;
  const std::string drained_path = state_dir + "/drained.json";
  if (auto d = readDrained(drained_path); !d) {
    spdlog::error("{}", d.error().message);
    return 1;
  } else {
    drained = std::move(*d);
  }
  std::unique_ptr<LeaseService> leases;
  std::function<void()> wake;  // set once the driver exists
  if (!lease_listen.empty()) {
    auto key = ownership::readKeyFile(peer_key_file);
    if (!key) {
      spdlog::error("--peer-key: {}", key.error().message);
      return 2;
    }
    LeaseService::Options lo{lease_listen, *key, {}, {}};
    lo.timing.lease = std::chrono::milliseconds(lease_ms);
    lo.timing.promise = std::chrono::milliseconds(promise_ms);
    auto l =
        LeaseService::open(lo, std::make_unique<LeaseFile>(state_dir + "/leases.json"), [&wake] {
          if (wake) wake();
        });
    if (!l) {
      spdlog::error("{}", l.error().message);
      return 1;
    }
    leases = std::move(*l);
    spdlog::info("failover: lease server on {}", lease_listen);
  }
  ControllerMetrics metrics(ctl);
  metrics.leader.Set(1);

  auto reconcile = [&]() -> RunResult {
    World w = dir.load();
    for (const auto& e : dir.errors()) spdlog::warn("{}", e.message);
    {
      std::lock_guard l(drained_mu);
      for (const auto& n : drained)
        if (auto it = w.nodes.find(n); it != w.nodes.end()) it->second.drained = true;
    }
    if (leases) {
      w.failover = true;
      w.leases = leases->leases();
    }
    auto r = ctl.reconcile(w, dir.errors(), dir.state());
    if (r && leases) {
      leases->designate(failoverRoles(w, ctl.ledger()));
      leases->handover(plannedHandovers(w, ctl.ledger()));
    }
    if (!r) {
      spdlog::error("reconcile: {}", r.error().message);
      return RunResult::error();
    }
    if (r->held) {
      const auto v = ctl.view();
      const std::string why = v->hold ? v->hold->reason : "?";
      if (r->recheck_after)
        spdlog::info("waiting: {}", why);  // a file being written: transient
      else
        spdlog::error("holding every change: {}", why);
      RunResult held = RunResult::idle();
      held.requeue_after = r->recheck_after;
      return held;
    }
    if (r->changed || r->events || r->gateways_written)
      spdlog::info("reconciled: {} ledger changes, {} events, {} gateway states written",
                   r->changed, r->events, r->gateways_written);
    RunResult ok = RunResult::ok();
    if (r->next_change_at)  // an onboarding ends: the gateways' states change then
      ok.requeue_after =
          std::chrono::seconds(std::max<Seconds>(1, *r->next_change_at - time(nullptr)));
    return ok;
  };
  if (once) {
    // A file written a moment ago is waited for (its settle time), not
    // failed on: `--once` right after copying manifests works. Anything
    // else that holds (an operator's confirmation) fails at once.
    for (int tries = 0; tries < 100; ++tries) {
      const RunResult r = reconcile();
      if (r.kind == RunResult::Kind::kOk) return 0;
      if (r.kind == RunResult::Kind::kError || !r.requeue_after) return 1;
      std::this_thread::sleep_for(*r.requeue_after);
    }
    return 1;
  }

  // The HTTP API on a thread of its own: a reconcile (reading every
  // manifest) never delays a feed, and slow routes run on the server's
  // workers.
  ApiContext api{[&] { return ctl.view(); },
                 store->get(),
                 [&] { return metrics.text(); },
                 {},
                 [&](const std::string& token) {
                   auto s = ctl.confirmRelease(token);
                   if (s) spdlog::warn("release confirmed by an operator (token {})", token);
                   return s;
                 },
                 [&](const std::string& node, bool drain) -> Result<std::set<std::string>> {
                   std::set<std::string> now;
                   {
                     std::lock_guard l(drained_mu);
                     auto next = drained;
                     if (drain)
                       next.insert(node);
                     else
                       next.erase(node);
                     if (auto w = writeDrained(drained_path, next); !w) return w.error();
                     drained = next;
                     now = drained;
                   }
                   spdlog::warn("gateway {} {} by an operator", node,
                                drain ? "drained" : "undrained");
                   if (wake) wake();
                   return now;
                 },
                 [&](const IpAddress& ip, const std::string& by) {
                   auto s = ctl.acknowledgeRemoval(ip, by);
                   if (s) {
                     spdlog::info("removal of {} acknowledged by {}", ip.str(), by);
                     if (wake) wake();
                   }
                   return s;
                 }};
  auto serving = Serving::start(serve, api, metrics);
  if (!serving) {
    spdlog::error("{}", serving.error().message);
    return 1;
  }
  auto webhooks = Webhooks::start(hooks);
  if (!webhooks) {
    spdlog::error("{}", webhooks.error().message);
    return 2;
  }
  if (!hooks.urls.empty()) {
    metrics.addCollectable((*webhooks)->metrics());
    ctl.setOnCommit([w = webhooks->get()](const std::vector<AuditEvent>& e) { w->notify(e); });
  }

  boost::asio::io_context io;
  DriverOptions dopts;
  dopts.debounce = std::chrono::milliseconds(50);  // coalesce an editor's burst of writes
  dopts.resync = std::chrono::seconds(resync_s);
  ReconcileDriver driver(
      io, SystemClock::instance(), dopts, [&](const RunRequest&) { return reconcile(); },
      &metrics.driver);
  // The manifest directory's changes trigger a reconcile.
  int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  inotify_add_watch(ino, manifests.c_str(),
                    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE);
  boost::asio::posix::stream_descriptor watch(io, ino);
  std::function<void()> arm_watch = [&] {
    watch.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [&](const boost::system::error_code& ec) {
                       if (ec) return;
                       char buf[4096];
                       while (read(ino, buf, sizeof buf) > 0) {
                       }
                       driver.trigger();
                       arm_watch();
                     });
  };
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait(
      [&](const boost::system::error_code&, int) { driver.shutdown([&] { io.stop(); }); });
  wake = [&driver] { driver.trigger(); };
  driver.start();
  arm_watch();
  spdlog::info("started: manifests {}, ledger {}", manifests, ledger_path);
  io.run();
  return 0;
}
