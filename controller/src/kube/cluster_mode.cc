#include "nsegress/kube/cluster_mode.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <csignal>
#include <set>
#include <thread>

#include "nsegress/common/kubernetes.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/http_server.h"
#include "nsegress/controller/manifests.h"
#include "nsegress/controller/metrics.h"
#include "nsegress/kube/informer.h"
#include "nsegress/kube/kube_store.h"
#include "nsegress/kube/leader.h"

namespace nsegress::kube {

using nlohmann::json;

std::string releaseFinalizerPatch(const std::vector<std::string>& finalizers) {
  json ops = json::array();
  for (size_t i = finalizers.size(); i-- > 0;) {  // from the end: earlier indices stay valid
    if (finalizers[i] != kReleaseFinalizer) continue;
    const std::string path = "/metadata/finalizers/" + std::to_string(i);
    ops.push_back({{"op", "test"}, {"path", path}, {"value", kReleaseFinalizer}});
    ops.push_back({{"op", "remove"}, {"path", path}});
  }
  return ops.empty() ? "" : ops.dump();
}

namespace {

std::atomic<bool> g_stop{false};

// Objects from the API go through the same parser as manifests (JSON is
// YAML); pods, the bulk, are built from their compact cache entries with the
// same rules (podFrom). The caches are read in place, not copied.
controller::World buildWorld(const std::vector<const Informer*>& informers,
                             std::vector<controller::ManifestError>& errors,
                             std::map<std::string, json>& namespaces_raw) {
  controller::World w;
  for (const auto* inf : informers) {
    inf->read([&](const std::map<std::string, json>& items) {
      for (const auto& [key, obj] : items) {
        if (auto p = cachedPod(obj)) {
          auto pod = controller::podFrom(p->ns, p->name, "", p->phase, p->host_network, p->ips);
          if (pod)
            w.pods.push_back(std::move(*pod));
          else
            errors.push_back({"api:" + key, pod.error().message});
          continue;
        }
        if (obj.value("kind", "") == "Namespace") {
          namespaces_raw[key] = obj;
          // A namespace being deleted is gone for the allocator: its address is
          // released; the finalizer holds the namespace until that is recorded.
          if (obj.value("metadata", json::object()).contains("deletionTimestamp")) continue;
        }
        auto parsed = controller::parseManifests(obj.dump(), "api:" + key);
        if (!parsed) {
          errors.push_back({"api:" + key, parsed.error().message});
          continue;
        }
        for (auto& [n, p] : parsed->pools) w.pools[n] = p;
        for (auto& [n, ns] : parsed->namespaces) w.namespaces[n] = ns;
        for (auto& [n, nd] : parsed->nodes) w.nodes[n] = nd;
      }
    });
  }
  return w;
}

// Writes nsegress.io/assigned-ip and the release finalizer; removes the
// finalizer once a deleted namespace no longer holds an address.
void writeBack(Client& c, const controller::View& v,
               const std::map<std::string, json>& namespaces) {
  std::set<std::string> holders;
  for (const auto& [ip, r] : v.ledger)
    if (r.state == controller::AddressState::kAssigned) holders.insert(r.ns);
  for (const auto& [name, ns] : namespaces) {
    const auto& m = ns["metadata"];
    const auto ann = m.value("annotations", json::object());
    std::vector<std::string> fins = m.value("finalizers", std::vector<std::string>{});
    const bool has_fin = std::find(fins.begin(), fins.end(), kReleaseFinalizer) != fins.end();
    const bool deleting = m.contains("deletionTimestamp");
    const bool requested =
        ann.contains(controller::kPoolAnnotation) || ann.contains(controller::kIpAnnotation);
    const bool holds = holders.count(name) > 0;
    json patch_meta = json::object();
    if (!deleting) {
      auto st = v.statuses.find(name);
      const std::string want =
          st != v.statuses.end() && st->second.phase == controller::Phase::kAssigned
              ? st->second.ip->str()
              : "";
      const std::string have = ann.value(controller::kAssignedAnnotation, "");
      if (want != have)
        patch_meta["annotations"][controller::kAssignedAnnotation] =
            want.empty() ? json(nullptr) : json(want);
      if (requested && !has_fin) {
        fins.push_back(kReleaseFinalizer);
        patch_meta["finalizers"] = fins;
      }
    } else if (has_fin && !holds) {
      auto r = c.request("PATCH", "/api/v1/namespaces/" + name, releaseFinalizerPatch(fins),
                         "application/json-patch+json");
      // 422/409: the list changed since it was read; the watch brings the
      // new version and the next pass retries.
      if (!r || (r->status != 200 && r->status != 404 && r->status != 409 && r->status != 422))
        spdlog::warn("namespace {}: finalizer removal failed: {}", name,
                     r ? r->body.substr(0, 200) : r.error().message);
      continue;
    }
    if (patch_meta.empty()) continue;
    // Conditional on the version we saw: never overwrite someone else's edit.
    patch_meta["resourceVersion"] = m.value("resourceVersion", "");
    auto r = c.request("PATCH", "/api/v1/namespaces/" + name, json{{"metadata", patch_meta}}.dump(),
                       "application/merge-patch+json");
    if (!r || (r->status != 200 && r->status != 404 && r->status != 409))
      spdlog::warn("namespace {}: write-back failed: {}", name,
                   r ? r->body.substr(0, 200) : r.error().message);
  }
}

// Sets or removes the leader label on this replica's Pod; true once the Pod
// shows `want`.
bool labelPod(Client& c, const std::string& ns, const std::string& pod, bool want) {
  json patch{{"metadata", {{"labels", {{kLeaderLabel, want ? json("true") : json(nullptr)}}}}}};
  auto r = c.request("PATCH", "/api/v1/namespaces/" + ns + "/pods/" + pod, patch.dump(),
                     "application/merge-patch+json");
  if (r && r->status == 200) return true;
  spdlog::warn("pod {}: leader label not {}: {}", pod, want ? "set" : "removed",
               r ? r->body.substr(0, 200) : r.error().message);
  return false;
}

// EgressPool status (kubectl get egresspools: ASSIGNED, QUARANTINED, FREE).
// Written when it changes; `written` remembers what this leader wrote.
struct WrittenPool {
  controller::PoolUsage usage;
  std::string ready_since;  // the condition's lastTransitionTime
};
void writePoolStatus(Client& c, const controller::View& v,
                     std::map<std::string, WrittenPool>& written) {
  const std::string now = controller::formatTime(v.at);
  for (const auto& [name, u] : controller::poolUsage(v.pools, v.ledger)) {
    auto prev = written.find(name);
    if (prev != written.end() && prev->second.usage == u) continue;
    const bool same_ready =
        prev != written.end() && prev->second.usage.invalid.empty() == u.invalid.empty();
    const std::string since = same_ready ? prev->second.ready_since : now;
    json cond{{"type", "Ready"},
              {"status", u.invalid.empty() ? "True" : "False"},
              {"reason", u.invalid.empty() ? "Valid" : "InvalidSpec"},
              {"message", u.invalid.empty() ? std::to_string(u.free) + " of " +
                                                  std::to_string(u.size) + " addresses free"
                                            : u.invalid.substr(0, 1024)},
              {"lastTransitionTime", since}};
    json status{{"size", u.size},
                {"assigned", u.assigned},
                {"quarantined", u.quarantined},
                {"free", u.free},
                {"conditions", json::array({cond})}};
    auto r = c.request("PATCH", "/apis/nsegress.io/v1alpha1/egresspools/" + name + "/status",
                       json{{"status", status}}.dump(), "application/merge-patch+json");
    if (r && (r->status == 200 || r->status == 404)) {
      written[name] = WrittenPool{u, since};
    } else {
      spdlog::warn("pool {}: status not written: {}", name,
                   r ? r->body.substr(0, 200) : r.error().message);
    }
  }
}

}  // namespace

int runClusterMode(const ClusterModeOptions& o) {
  if (o.renew_deadline_ms >= o.lease_duration_ms) {
    spdlog::error(
        "--renew-deadline-ms must be shorter than --lease-duration-ms (else two leaders could "
        "act)");
    return 2;
  }
  auto cfg = autoDetect(Env::system(), o.kubeconfig);
  if (!cfg) {
    spdlog::error("{}", cfg.error().message);
    return 1;
  }
  const std::string identity = o.identity.empty() ? [] {
    char h[256] = {};
    gethostname(h, sizeof h - 1);
    return std::string(h) + "-" + std::to_string(getpid());
  }()
                                                  : o.identity;
  std::mutex mu;
  std::condition_variable cv;
  bool dirty = true;
  auto changed = [&] {
    std::lock_guard l(mu);
    dirty = true;
    cv.notify_all();
  };
  Informer nss(*cfg, "/api/v1/namespaces", trimNamespace, changed);
  Informer pods(*cfg, "/api/v1/pods", trimPod, changed);
  Informer nodes(*cfg, "/api/v1/nodes", trimNode, changed);
  Informer pools(*cfg, "/apis/nsegress.io/v1alpha1/egresspools", trimEgressPool, changed);
  const std::vector<const Informer*> all = {&pools, &nodes, &nss, &pods};
  for (auto* i : {&nss, &pods, &nodes, &pools}) i->start();

  Client api(*cfg);
  KubeLedgerStore store(api, o.lease_namespace);
  controller::Controller ctl(
      store, [] { return static_cast<controller::Seconds>(time(nullptr)); }, o.gateway_state_dir);
  controller::ControllerMetrics metrics(ctl);

  Client lease_client(*cfg);
  LeaderElector elector(lease_client,
                        LeaderOptions{o.lease_namespace, "nsegress-controller", identity,
                                      std::chrono::milliseconds(o.lease_duration_ms),
                                      std::chrono::milliseconds(o.renew_deadline_ms),
                                      std::chrono::milliseconds(o.retry_period_ms)});
  std::thread elect([&] {
    while (!g_stop) {
      elector.tick();
      for (int t = 0; t < o.retry_period_ms && !g_stop; t += 50)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    elector.release();  // fast hand-over to the standby
  });

  // Written by the loop, read by the HTTP thread: serve only as a leader
  // whose ledger is loaded and reconciled.
  std::atomic<bool> serving{false};
  boost::asio::io_context io;
  std::unique_ptr<controller::HttpServer> server;
  if (!o.listen.empty()) {
    auto colon = o.listen.rfind(':');
    auto s = controller::HttpServer::listen(
        io, o.listen.substr(0, colon), static_cast<uint16_t>(std::stoi(o.listen.substr(colon + 1))),
        [&](const std::string& m, const std::string& t) {
          return controller::handleRequest(
              controller::ApiContext{ctl.view(), &store, [&] { return metrics.text(); },
                                     serving ? "" : "not serving: this replica is not the leader"},
              m, t);
        });
    if (!s) {
      spdlog::error("{}", s.error().message);
      g_stop = true;
    } else {
      server = std::move(*s);
    }
  }
  std::thread http([&] {
    auto guard = boost::asio::make_work_guard(io);
    io.run();
  });

  std::signal(SIGTERM, [](int) { g_stop = true; });
  std::signal(SIGINT, [](int) { g_stop = true; });
  spdlog::info("cluster mode: {} as {}", cfg->source, identity);
  bool started = false, was_leader = false;
  std::map<std::string, WrittenPool> pool_status;
  // The Pod's leader label as last written: -1 unknown (a restarted
  // container may find it set), 0 absent, 1 present.
  int labeled = -1;
  auto label = [&](bool want) {
    if (!o.pod_name.empty() && labeled != int(want) &&
        labelPod(api, o.lease_namespace, o.pod_name, want))
      labeled = want;
  };
  while (!g_stop) {
    {
      std::unique_lock l(mu);
      cv.wait_for(l, std::chrono::seconds(o.resync_seconds),
                  [&] { return dirty || g_stop.load(); });
      dirty = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // coalesce a burst of events
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
      started = false;  // a new term starts from the API server's ledger
      pool_status.clear();
      continue;
    }
    if (!std::all_of(all.begin(), all.end(), [](const Informer* i) { return i->synced(); }))
      continue;
    if (!started) {
      if (auto r = ctl.start(); !r) {
        spdlog::error("load ledger: {}", r.error().message);
        continue;
      }
      started = true;
    }
    std::vector<controller::ManifestError> errors;
    std::map<std::string, json> raw;
    auto world = buildWorld(all, errors, raw);
    auto r = ctl.reconcile(world, errors);
    if (!r) {
      metrics.reconcile_error.Increment();
      spdlog::warn("reconcile: {} (retrying)", r.error().message);
      changed();
      continue;
    }
    metrics.reconcile_ok.Increment();
    serving = true;
    if (r->changed || r->events)
      spdlog::info("reconciled: {} ledger changes, {} events", r->changed, r->events);
    const auto view = ctl.view();
    writeBack(api, *view, raw);
    writePoolStatus(api, *view, pool_status);
    label(true);
  }
  serving = false;
  // Readers move to the next leader before the Lease is released.
  label(false);
  io.stop();
  http.join();
  elect.join();
  for (auto* i : {&nss, &pods, &nodes, &pools}) i->stop();
  return 0;
}

}  // namespace nsegress::kube
