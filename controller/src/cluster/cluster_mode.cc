#include "nsegress/controller/cluster/cluster_mode.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <thread>

#include "nsegress/common/decode.h"
#include "nsegress/common/failover_roles.h"
#include "nsegress/common/reconcile_driver.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/cluster/lease_records.h"
#include "nsegress/controller/cluster/ledger_store.h"
#include "nsegress/controller/cluster/write_back.h"
#include "nsegress/controller/http.h"
#include "nsegress/controller/lease_service.h"
#include "nsegress/controller/metrics.h"
#include "nsegress/kube/client.h"
#include "nsegress/kube/informer.h"
#include "nsegress/kube/leader.h"
#include "nsegress/kube/request_queue.h"

namespace nsegress::controller::cluster {

namespace {

// The informers the controller reads, typed.
struct Sources {
  kube::Informer<Pool> pools;
  kube::Informer<Node> nodes;
  kube::Informer<Namespace> namespaces;
  kube::Informer<Pod> pods;
  std::vector<kube::InformerBase*> all() { return {&pools, &nodes, &namespaces, &pods}; }
  bool synced() {
    auto a = all();
    return std::all_of(a.begin(), a.end(), [](auto* i) { return i->synced(); });
  }
};

// The allocator's world from the informers' caches (typed already: no
// re-parsing). A namespace being deleted is gone for the allocator (its
// address is released; the release finalizer holds the namespace until that
// is recorded); `all_namespaces` keeps it for the write-back.
World buildWorld(Sources& s, std::vector<ManifestError>& errors,
                 std::map<std::string, Namespace>& all_namespaces) {
  World w;
  s.pools.read([&](const auto& m) {
    for (const auto& [k, p] : m) w.pools[p.name] = p;
  });
  markOverlappingPools(w.pools);
  s.nodes.read([&](const auto& m) {
    for (const auto& [k, n] : m) w.nodes[n.name] = n;
  });
  s.namespaces.read([&](const auto& m) {
    for (const auto& [k, ns] : m) {
      all_namespaces[ns.name] = ns;
      if (!ns.deleting) w.namespaces[ns.name] = ns;
    }
  });
  s.pods.read([&](const auto& m) {
    w.pods.reserve(m.size());
    for (const auto& [k, p] : m) w.pods.push_back(p);
  });
  for (auto* i : s.all())
    for (const auto& [key, why] : i->malformed())
      errors.push_back({"api:" + i->path() + "/" + key, key + ": " + why});
  return w;
}

std::string defaultIdentity() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return std::string(h) + "-" + std::to_string(getpid());
}

}  // namespace

int runClusterMode(const ClusterModeOptions& o) {
  if (o.renew_deadline_ms >= o.lease_duration_ms) {
    spdlog::error(
        "--renew-deadline-ms must be shorter than --lease-duration-ms (else two leaders could "
        "act)");
    return 2;
  }
  auto cfg = kube::autoDetect(kube::Env::system(), o.kubeconfig);
  if (!cfg) {
    spdlog::error("{}", cfg.error().message);
    return 1;
  }
  const std::string identity = o.identity.empty() ? defaultIdentity() : o.identity;
  Clock& clock = SystemClock::instance();
  // Three clients: watches, writes, and the Lease (so renewals never queue
  // behind a burst of writes).
  kube::Client watch_api(*cfg, kube::ClientOptions{o.qps, o.burst, std::chrono::seconds(30)});
  kube::Client api(*cfg, kube::ClientOptions{o.qps, o.burst, std::chrono::seconds(30)});
  kube::Client lease_api(*cfg);
  // Background writes, each queue with its own client (and rate limit):
  // Events, and each namespace's annotation as soon as its address commits.
  kube::Client events_api(*cfg, kube::ClientOptions{o.qps, o.burst, std::chrono::seconds(30)});
  kube::Client stream_api(*cfg, kube::ClientOptions{o.qps, o.burst, std::chrono::seconds(30)});

  KubeLedgerStore store(api, clock, o.lease_namespace);
  kube::RequestQueue event_queue(events_api);
  store.setEventSender([&](std::string path, std::string body) {
    // "/apis/events.k8s.io/v1/namespaces/<ns>/events"
    const auto a = path.find("/namespaces/") + 12;
    std::string ns = path.substr(a, path.find('/', a) - a);
    if (!event_queue.push(
            {"POST", std::move(path), std::move(body), "application/json",
             [&store, ns](const Result<kube::Response>& r) { store.eventWritten(ns, r); }}))
      store.eventWritten(ns, makeError(ENOBUFS, "event queue full"));
  });
  Controller ctl(
      store, [&clock] { return static_cast<Seconds>(clock.unixNow()); }, o.gateway_state_dir,
      o.guard);
  ControllerMetrics metrics(ctl);
  metrics.setDenied([&] {
    std::map<std::string, uint64_t> all;
    for (const kube::Client* c : {&watch_api, &api, &lease_api, &events_api, &stream_api})
      for (const auto& [k, n] : c->denied()) all[k] += n;
    return all;
  });
  metrics.setRequests([&] {
    return watch_api.requests() + api.requests() + lease_api.requests() + events_api.requests() +
           stream_api.requests();
  });
  kube::LeaderElector elector(
      lease_api, clock,
      kube::LeaderOptions{o.lease_namespace, "nsegress-controller", identity,
                          std::chrono::milliseconds(o.lease_duration_ms),
                          std::chrono::milliseconds(o.renew_deadline_ms),
                          std::chrono::milliseconds(o.retry_period_ms)});

  // Written by the loop, read by the HTTP thread: serve only as a leader
  // whose ledger is loaded and reconciled.
  std::atomic<bool> serving{false};
  bool started = false, was_leader = false;
  std::map<std::string, WrittenPool> pool_status;
  // The leader's entry in the Service's Endpoints as last written: -1
  // unknown (a restarted container may find itself listed), 0 absent, 1 present.
  int published = -1;
  LeaderEndpoint endpoint{o.lease_namespace, o.service_name, o.pod_name, o.pod_ip};
  auto label = [&](bool want) {
    if (!o.pod_ip.empty() && published != int(want) && publishLeaderEndpoint(api, endpoint, want))
      published = want;
  };

  boost::asio::io_context loop;
  std::unique_ptr<ReconcileDriver> driver;
  auto changed = [&] { driver->trigger(); };
  Sources src{
      kube::Informer<Pool>(watch_api, clock, "/apis/nsegress.io/v1alpha1/egresspools", decodePool,
                           changed),
      kube::Informer<Node>(watch_api, clock, "/api/v1/nodes", decodeNode, changed),
      kube::Informer<Namespace>(watch_api, clock, "/api/v1/namespaces", decodeNamespace, changed),
      kube::Informer<Pod>(watch_api, clock, "/api/v1/pods", decodePod, changed)};

  store.setReporter(identity, [&src](const std::string& ns) {
    std::string uid;
    src.namespaces.read([&](const auto& m) {
      if (auto it = m.find(ns); it != m.end()) uid = it->second.uid;  // keyed by name
    });
    return uid;
  });

  // Streamed write-back: the annotation (and finalizer) of a namespace is
  // written as soon as its address is committed, from the informer's view of
  // it (conditional on that version), not after the whole batch. What was
  // written is remembered so the batch's write-back does not repeat it.
  std::mutex streamed_mu;
  std::map<std::string, std::string> streamed;  // namespace -> assigned-ip written
  kube::RequestQueue stream_queue(stream_api);  // (after what its callbacks use)
  store.setOnAssigned([&](const AddressRecord& r) {
    std::optional<std::string> patch;
    src.namespaces.read([&](const auto& m) {
      if (auto it = m.find(r.ns); it != m.end() && !it->second.deleting)
        patch = namespacePatch(it->second, r.ip.str());
    });
    if (!patch) return;
    stream_queue.push(
        {"PATCH", "/api/v1/namespaces/" + r.ns, std::move(*patch), "application/merge-patch+json",
         [&streamed_mu, &streamed, ns = r.ns, ip = r.ip.str()](const Result<kube::Response>& res) {
           if (res && res->status == 200) {
             std::lock_guard l(streamed_mu);
             streamed[ns] = ip;
           }
         }});
  });

  // Failover: the lease book, for the leader's term only (a new term reads
  // the Leases again and waits out the quiet period before any takeover).
  std::unique_ptr<LeaseService> leases;
  auto openLeases = [&]() -> bool {
    if (o.lease_listen.empty()) return true;
    if (leases && !leases->stale()) return true;
    if (leases) spdlog::error("failover: the lease book is stale (another writer); reopening");
    leases.reset();
    LeaseService::Options lo{
        o.lease_listen, o.peer_key, {}, [&elector] { return elector.isLeader(); }};
    lo.timing.lease = std::chrono::milliseconds(o.lease_ms);
    lo.timing.promise = std::chrono::milliseconds(o.promise_ms);
    auto l = LeaseService::open(lo, std::make_unique<KubeLeaseRecords>(api, o.lease_namespace),
                                [&] { driver->trigger(); });
    if (!l) {
      spdlog::error("failover: lease book: {}", l.error().message);
      return false;
    }
    leases = std::move(*l);
    endpoint.lease_port = leases->port();
    published = -1;  // the Endpoints gain the lease port
    spdlog::info("failover: lease book on {} (port {})", o.lease_listen, endpoint.lease_port);
    return true;
  };

  auto run = [&](const RunRequest&) -> RunResult {
    const bool leader = elector.isLeader();
    metrics.leader.Set(leader ? 1 : 0);
    // Counters follow the store's totals.
    metrics.ledger_conflicts.Increment(static_cast<double>(store.conflicts()) -
                                       metrics.ledger_conflicts.Value());
    metrics.event_write_failures.Increment(static_cast<double>(store.eventFailures()) -
                                           metrics.event_write_failures.Value());
    if (leader != was_leader) spdlog::info("{} leadership", leader ? "acquired" : "lost");
    was_leader = leader;
    if (!leader) {
      serving = false;
      label(false);
      leases.reset();   // grants nothing outside a term
      started = false;  // a new term starts from the API server's ledger
      pool_status.clear();
      return RunResult::idle();
    }
    if (!src.synced()) return RunResult::idle();  // each informer's first list triggers a run
    if (!started) {
      if (auto r = ctl.start(); !r) {
        spdlog::error("load ledger: {}", r.error().message);
        return RunResult::error();
      }
      started = true;
    }
    if (!openLeases()) return RunResult::error();
    std::vector<ManifestError> errors;
    std::map<std::string, Namespace> all_namespaces;
    auto world = buildWorld(src, errors, all_namespaces);
    if (leases) {
      world.failover = true;
      world.leases = leases->leases();
    }
    auto r = ctl.reconcile(world, errors);
    if (r && leases) {
      leases->designate(failoverRoles(world, ctl.ledger()));
      leases->handover(plannedHandovers(world, ctl.ledger()));
    }
    if (!r) {
      spdlog::warn("reconcile: {} (retrying)", r.error().message);
      return RunResult::error();
    }
    serving = true;  // a hold serves the ledger as it stands
    if (r->held) {
      spdlog::error("holding every change: {}", ctl.view()->hold ? ctl.view()->hold->reason : "?");
      label(true);
      return RunResult::idle();
    }
    serving = true;
    if (r->changed || r->events)
      spdlog::info("reconciled: {} ledger changes, {} events", r->changed, r->events);
    const auto view = ctl.view();
    stream_queue.drain(std::chrono::seconds(30));
    std::map<std::string, std::string> already;
    {
      std::lock_guard l(streamed_mu);
      already.swap(streamed);  // this pass's namespaces view is older than these writes
    }
    writeBack(api, *view, all_namespaces, already);
    writePoolStatus(api, *view, pool_status);
    label(true);
    RunResult ok = RunResult::ok();
    if (r->next_change_at)  // an onboarding ends: statuses change then
      ok.requeue_after = std::chrono::seconds(
          std::max<Seconds>(1, *r->next_change_at - static_cast<Seconds>(time(nullptr))));
    return ok;
  };
  DriverOptions dopts;
  dopts.debounce = std::chrono::milliseconds(100);  // coalesce a burst of events
  dopts.resync = std::chrono::seconds(o.resync_seconds);
  driver = std::make_unique<ReconcileDriver>(loop, clock, dopts, run, &metrics.driver);

  ApiContext api_ctx{[&] { return ctl.view(); },
                     &store,
                     [&] { return metrics.text(); },
                     [&] {
                       return serving ? std::string()
                                      : std::string("not serving: this replica is not the leader");
                     },
                     [&](const std::string& token) { return ctl.confirmRelease(token); },
                     {},
                     [&](const IpAddress& ip, const std::string& by) {
                       auto s = ctl.acknowledgeRemoval(ip, by);
                       if (s) {
                         spdlog::info("removal of {} acknowledged by {}", ip.str(), by);
                         driver->trigger();
                       }
                       return s;
                     }};
  auto http = Serving::start(o.serve, api_ctx, metrics);
  if (!http) {
    spdlog::error("{}", http.error().message);
    return 1;
  }
  auto webhooks = Webhooks::start(o.webhooks);
  if (!webhooks) {
    spdlog::error("{}", webhooks.error().message);
    return 2;
  }
  if (!o.webhooks.urls.empty()) {
    metrics.addCollectable((*webhooks)->metrics());
    ctl.setOnCommit([w = webhooks->get()](const std::vector<AuditEvent>& e) { w->notify(e); });
  }
  // The Endpoints name the ports the API really listens on.
  endpoint.port = (*http)->apiPort();
  endpoint.https_port = (*http)->tlsPort();

  // Leadership changes (won, lost, lapsed) wake the loop at once.
  Stopper elect_stop;
  std::thread elect(
      [&] { kube::runElection(elector, clock, elect_stop, [&](bool) { driver->trigger(); }); });

  boost::asio::signal_set signals(loop, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    // Shutdown goes through the loop, after any reconcile in progress:
    // stop serving and move readers to the next leader before the Lease
    // is released.
    driver->shutdown([&] {
      serving = false;
      leases.reset();
      label(false);
      loop.stop();
    });
  });
  spdlog::info("cluster mode: {} as {}", cfg->source, identity);
  for (auto* i : src.all()) i->start();
  driver->start();
  loop.run();

  elect_stop.request();
  elect.join();  // releases the Lease: fast hand-over to a standby
  for (auto* i : src.all()) i->stop();
  return 0;
}

}  // namespace nsegress::controller::cluster
