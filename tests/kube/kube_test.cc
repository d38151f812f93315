// Against a real kube-apiserver (label `kube`): manifests accepted, the
// client's list/watch/patch, RBAC, 410 Gone after compaction, API server restart.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "kube_env.h"
#include "lab.h"
#include "nsegress/common/decode.h"
#include "nsegress/common/desired_state.h"
#include "nsegress/controller/cluster/ledger_store.h"
#include "nsegress/controller/controller.h"
#include "nsegress/kube/client.h"
#include "nsegress/kube/informer.h"
#include "nsegress/kube/leader.h"
#include "test_certs.h"

namespace nsegress::testing {
namespace {

using nlohmann::json;

KubeEnv* env = nullptr;

// A typed Namespace informer with its own client, as the processes run them.
struct NsInformer {
  kube::Client api;
  kube::Informer<Namespace> inf;
  NsInformer(const kube::KubeConfig& cfg, std::string path, std::function<void()> on_change,
             kube::InformerOptions o = {})
      : api(cfg, kube::ClientOptions{50, 100, std::chrono::seconds(30)}),
        inf(api, SystemClock::instance(), std::move(path), decodeNamespace, std::move(on_change),
            o) {}
  std::set<std::string> names() const {
    std::set<std::string> out;
    inf.read([&](const auto& m) {
      for (const auto& [k, ns] : m) out.insert(k);
    });
    return out;
  }
};

class KubeEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (geteuid() != 0) return;
    if (!KubeEnv::available()) return;
    env = new KubeEnv();
  }
  void TearDown() override {
    delete env;
    env = nullptr;
  }
};

class KubeApi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: runs the API server in a network namespace";
    if (!KubeEnv::available())
      GTEST_FAIL() << "no kube-apiserver in " << KubeEnv::binDir()
                   << ": run tests/kube/build-apiserver.sh";
    in_ = std::make_unique<lab::NetnsEnter>(env->netns());
  }
  kube::Client client(const std::string& token = "admin-token") {
    return kube::Client(env->config(token),
                        kube::ClientOptions{200, 200, std::chrono::seconds(10)});
  }
  // The ledger of earlier tests (EgressIPs of namespaces that never existed
  // here) would be held by the release guard of a controller started later:
  // each test that writes it clears it.
  static void clearLedger() {
    std::string out;
    EXPECT_EQ(env->kubectl("delete egressips --all --wait=false", &out), 0) << out;
  }
  static void applyManifests() {
    static bool done = false;
    if (done) return;
    std::string out;
    // Server-side apply, as an operator would (it refuses Services whose
    // ports lack a protocol); the CRDs first, a kustomization of their own.
    ASSERT_EQ(env->kubectl("apply --server-side -k " NSEGRESS_SOURCE_DIR "/manifests/crds", &out),
              0)
        << out;
    ASSERT_EQ(env->kubectl("wait --for condition=established --timeout=60s "
                           "crd/egresspools.nsegress.io crd/egressips.nsegress.io",
                           &out),
              0)
        << out;
    ASSERT_EQ(env->kubectl("apply --server-side -k " NSEGRESS_SOURCE_DIR "/manifests", &out), 0)
        << out;
    ASSERT_EQ(
        env->kubectl("wait --for condition=established --timeout=60s crd/egresspools.nsegress.io "
                     "crd/egressips.nsegress.io",
                     &out),
        0)
        << out;
    done = true;
  }
  std::unique_ptr<lab::NetnsEnter> in_;
};

TEST_F(KubeApi, ManifestsAreAcceptedByTheRealApiServer) {
  applyManifests();
  std::string out;
  EXPECT_EQ(
      env->kubectl("apply --dry-run=server -f " NSEGRESS_SOURCE_DIR "/manifests/examples/", &out),
      0)
      << out;
  // The failover overlay (deploy/failover) too.
  EXPECT_EQ(
      env->kubectl(
          "apply --server-side --dry-run=server -k " NSEGRESS_SOURCE_DIR "/deploy/failover", &out),
      0)
      << out;
  // The CRD's validation rejects a malformed pool.
  const std::string bad = "/tmp/nsegress-bad-pool-" + std::to_string(getpid()) + ".yaml";
  std::ofstream(bad)
      << "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: bad}\n"
         "spec: {addresses: [], quarantine: soon}\n";
  EXPECT_NE(env->kubectl("apply --dry-run=server -f " + bad, &out), 0);
  std::remove(bad.c_str());
  EXPECT_NE(out.find("spec.quarantine"), std::string::npos) << out;
  EXPECT_EQ(env->kubectl("get egressips", &out), 0) << out;
}

TEST_F(KubeApi, ListWatchAndMergePatch) {
  auto c = client();
  auto list = c.request("GET", "/api/v1/namespaces");
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->status, 200) << list->body;
  const std::string rv = json::parse(list->body)["metadata"]["resourceVersion"];
  std::vector<json> events;
  std::mutex mu;
  std::atomic<bool> started{false}, cancel{false};
  std::thread watcher([&] {
    lab::NetnsEnter in(env->netns());
    auto w = client();
    started = true;
    // The server keeps this stream open for 10 minutes: events must be
    // delivered as they arrive, not when the stream ends.
    auto r = w.watch(
        "/api/v1/namespaces?watch=1&allowWatchBookmarks=true&resourceVersion=" + rv +
            "&timeoutSeconds=600",
        [&](const std::string& line) {
          auto e = json::parse(line, nullptr, false);
          if (!e.is_object() || e["type"] == "BOOKMARK") return true;
          if (e["object"]["metadata"]["name"] != "watch-me") return true;
          std::lock_guard l(mu);
          events.push_back(e);
          return events.size() < 2;
        },
        std::chrono::seconds(700), &cancel);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  });
  while (!started) std::this_thread::yield();
  auto created = c.request("POST", "/api/v1/namespaces", R"({"metadata":{"name":"watch-me"}})");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  auto patched =
      c.request("PATCH", "/api/v1/namespaces/watch-me",
                R"({"metadata":{"annotations":{"nsegress.io/assigned-ip":"203.0.113.10"}}})",
                "application/merge-patch+json");
  ASSERT_TRUE(patched);
  ASSERT_EQ(patched->status, 200) << patched->body;
  const bool delivered = lab::eventually([&] {
    std::lock_guard l(mu);
    return events.size() == 2;
  });
  cancel = true;  // ends the watch within 100 ms whatever happened
  watcher.join();
  EXPECT_TRUE(delivered) << "events held back while the stream was open";
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["type"], "ADDED");
  EXPECT_EQ(events[1]["type"], "MODIFIED");
  EXPECT_EQ(events[1]["object"]["metadata"]["annotations"]["nsegress.io/assigned-ip"],
            "203.0.113.10");
}

TEST_F(KubeApi, RbacDeniesWhatTheManifestsDoNotGrant) {
  applyManifests();
  const std::string eip =
      R"({"apiVersion":"nsegress.io/v1alpha1","kind":"EgressIP","metadata":{"name":"203.0.113.77"},
                              "spec":{"ip":"203.0.113.77","pool":"dmz"}})";
  auto gw = client("gateway-token");
  auto ctl = client("controller-token");
  auto nobody = client("nobody-token");
  auto status = [](Result<kube::Response> r) { return r ? r->status : -1; };
  EXPECT_EQ(status(gw.request("GET", "/apis/nsegress.io/v1alpha1/egressips")), 200);
  EXPECT_EQ(status(gw.request("GET", "/api/v1/pods")), 200);
  EXPECT_EQ(status(gw.request("GET", "/api/v1/nodes")), 200) << "nodes' addresses, for steering";
  EXPECT_EQ(status(gw.request("PATCH", "/api/v1/nodes/any", "{}", "application/merge-patch+json")),
            403)
      << "read only";
  EXPECT_EQ(status(gw.request("GET", "/apis/nsegress.io/v1alpha1/egresspools")), 200)
      << "failover: pools choose the standbys";
  EXPECT_EQ(
      status(gw.request("GET", "/apis/coordination.k8s.io/v1/namespaces/nsegress-system/leases")),
      200)
      << "failover: the ownership Leases";
  EXPECT_EQ(status(gw.request("PUT",
                              "/apis/coordination.k8s.io/v1/namespaces/nsegress-system/leases/"
                              "nsegress-egress-203-0-113-1",
                              "{}")),
            403)
      << "read only";
  EXPECT_EQ(status(gw.request("GET", "/api/v1/namespaces/kube-system/secrets")), 403);
  EXPECT_EQ(status(gw.request("POST", "/apis/nsegress.io/v1alpha1/egressips", eip)), 403)
      << "the gateway only reads";
  EXPECT_EQ(status(gw.request("PATCH", "/api/v1/namespaces/default",
                              R"({"metadata":{"annotations":{"x":"y"}}})",
                              "application/merge-patch+json")),
            403);
  EXPECT_EQ(status(ctl.request("POST", "/apis/nsegress.io/v1alpha1/egressips", eip)), 201);
  EXPECT_EQ(status(ctl.request("POST", "/apis/nsegress.io/v1alpha1/egressips", eip)), 409)
      << "create-if-absent";
  EXPECT_EQ(status(ctl.request("PATCH", "/api/v1/namespaces/default",
                               R"({"metadata":{"annotations":{"x":"y"}}})",
                               "application/merge-patch+json")),
            200);
  EXPECT_EQ(status(ctl.request("GET", "/api/v1/secrets")), 403) << "no secrets for the controller";
  EXPECT_EQ(status(ctl.request("DELETE", "/apis/nsegress.io/v1alpha1/egressips/203.0.113.77")), 403)
      << "the ledger is never deleted by the controller";
  EXPECT_EQ(status(ctl.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/nsegress-system/leases",
                R"({"metadata":{"name":"nsegress-controller"},"spec":{"holderIdentity":"a"}})")),
            201);
  EXPECT_EQ(
      status(ctl.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/any")),
      403)
      << "leases only in its own namespace";
  EXPECT_EQ(status(nobody.request("GET", "/api/v1/namespaces")), 403);
}

TEST_F(KubeApi, EachServiceAccountMayMakeItsOwnRequestsAndNoEscalation) {
  applyManifests();
  auto ctl = client("controller-token");
  auto gw = client("gateway-token");
  auto status = [](Result<kube::Response> r) { return r ? r->status : -1; };
  const std::string ns = "/api/v1/namespaces/nsegress-system";
  const std::string lease = "/apis/coordination.k8s.io/v1/namespaces/nsegress-system/leases";
  const std::string watch = "?watch=1&timeoutSeconds=1";
  // Every request the controller makes (kube::Client::denied() would count
  // any refusal). Allowed means: not 401/403 (404/409 are the API's answers).
  struct Req {
    std::string verb, path, body, type = "application/json";
  };
  const std::string merge = "application/merge-patch+json";
  for (const auto& r : std::vector<Req>{
           {"GET", "/api/v1/namespaces"},
           {"GET", "/api/v1/namespaces" + watch},
           {"GET", "/api/v1/pods"},
           {"GET", "/api/v1/pods" + watch},
           {"GET", "/api/v1/nodes"},
           {"GET", "/api/v1/nodes" + watch},
           {"GET", "/apis/nsegress.io/v1alpha1/egresspools"},
           {"GET", "/apis/nsegress.io/v1alpha1/egresspools" + watch},
           {"PATCH", "/apis/nsegress.io/v1alpha1/egresspools/none/status", "{}", merge},
           {"GET", "/apis/nsegress.io/v1alpha1/egressips"},
           {"POST", "/apis/nsegress.io/v1alpha1/egressips", "{}"},
           {"PUT", "/apis/nsegress.io/v1alpha1/egressips/none/status", "{}"},
           {"PATCH", "/api/v1/namespaces/none", "{}", merge},
           {"POST", "/apis/events.k8s.io/v1/namespaces/default/events", "{}"},
           {"POST", lease, "{}"},
           {"GET", lease + "/nsegress-controller"},
           {"PUT", lease + "/nsegress-controller", "{}"},
           {"POST", ns + "/configmaps", "{}"},
           {"GET", ns + "/configmaps/nsegress-controller-state"},
           {"PATCH", ns + "/configmaps/nsegress-controller-state", "{}", merge},
           {"GET", lease + "?labelSelector=nsegress.io%2Fegress-lease%3Dtrue"},
           {"PUT", lease + "/nsegress-egress-203-0-113-1", "{}"},
           {"GET", ns + "/endpoints/nsegress-controller"},
           {"PUT", ns + "/endpoints/nsegress-controller", "{}"}}) {
    const int st = status(ctl.request(r.verb, r.path, r.body, r.type));
    EXPECT_TRUE(st != 401 && st != 403 && st > 0)
        << "controller " << r.verb << " " << r.path << ": " << st;
  }
  for (const std::string& path : std::vector<std::string>{
           "/apis/nsegress.io/v1alpha1/egressips", "/api/v1/namespaces", "/api/v1/pods",
           "/api/v1/nodes", "/apis/nsegress.io/v1alpha1/egresspools",
           lease + "?labelSelector=nsegress.io%2Fegress-lease%3Dtrue",
           ns + "/endpoints?fieldSelector=metadata.name%3Dnsegress-controller"})
    for (const std::string& q : std::vector<std::string>{"", watch})
      EXPECT_EQ(status(gw.request("GET", path + (q.empty() || path.find('?') == std::string::npos
                                                     ? q
                                                     : "&" + q.substr(1)))),
                200)
          << "gateway GET " << path + q;
  // Escalations and grants nobody uses: denied.
  const std::string image_patch =
      R"({"spec":{"containers":[{"name":"gateway","image":"evil/image"}]}})";
  for (const auto& r : std::vector<Req>{
           {"PATCH", ns + "/pods/nsegress-gateway-x", image_patch, merge},
           {"PATCH", "/api/v1/namespaces/default/pods/any", image_patch, merge},
           {"POST", ns + "/pods", "{}"},
           {"GET", "/api/v1/secrets"},
           {"GET", ns + "/secrets"},
           {"PUT", "/api/v1/namespaces/default", "{}"},
           {"DELETE", "/api/v1/namespaces/default"},
           {"PUT", "/apis/nsegress.io/v1alpha1/egressips/203.0.113.1", "{}"},
           {"PATCH", "/apis/nsegress.io/v1alpha1/egressips/203.0.113.1", "{}", merge},
           {"DELETE", "/apis/nsegress.io/v1alpha1/egressips/203.0.113.1"},
           {"PUT", "/apis/nsegress.io/v1alpha1/egresspools/any", "{}"},
           {"PATCH", "/apis/events.k8s.io/v1/namespaces/default/events/x", "{}", merge},
           {"POST", "/api/v1/namespaces/default/events", "{}"},
           {"PUT", ns + "/endpoints/nsegress-gateway-metrics", "{}"},
           {"PATCH", ns + "/configmaps/other", "{}", merge},
           {"POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "{}"},
           {"PATCH", "/apis/apps/v1/namespaces/nsegress-system/daemonsets/nsegress-gateway", "{}",
            merge}}) {
    EXPECT_EQ(status(ctl.request(r.verb, r.path, r.body, r.type)), 403)
        << "controller " << r.verb << " " << r.path;
    EXPECT_EQ(status(gw.request(r.verb, r.path, r.body, r.type)), 403)
        << "gateway " << r.verb << " " << r.path;
  }
  EXPECT_EQ(status(gw.request("PATCH", "/api/v1/nodes/any", "{}", merge)), 403);
  EXPECT_EQ(status(gw.request("PATCH", "/api/v1/namespaces/default", "{}", merge)), 403);
}

TEST_F(KubeApi, ARotatedTokenFileIsReadAgainAndRefusalsAreCounted) {
  applyManifests();
  clearLedger();
  const std::string d = env->dir();
  const std::string token_file = d + "/rotating-token";
  std::ofstream(token_file) << "revoked-token\n";  // not (or no longer) accepted
  const std::string kc = d + "/rotating.kubeconfig";
  std::ofstream(kc) << "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                    << "clusters: [{name: c, cluster: {server: https://127.0.0.1:6443, "
                    << "certificate-authority: " << d << "/ca.crt}}]\n"
                    << "contexts: [{name: t, context: {cluster: c, user: u}}]\n"
                    << "users: [{name: u, user: {tokenFile: " << token_file << "}}]\n";
  lab::Process ctl(
      {"/usr/bin/ip", "netns", "exec", env->netns(), NSEGRESS_CONTROLLER_BIN, "--kubernetes",
       "--kubeconfig", kc, "--identity", "rotating", "--listen", "127.0.0.1:18190",
       "--lease-duration-ms", "4000", "--renew-deadline-ms", "3000", "--retry-period-ms", "500"},
      d + "/controller-rotating.log");
  auto metrics = [&] {
    std::string body;
    lab::run("ip netns exec " + env->netns() + " curl -s -m 2 127.0.0.1:18190/metrics", &body);
    return body;
  };
  EXPECT_TRUE(lab::eventually([&] {
    return metrics().find("nsegress_controller_api_denied_total{code=\"401\"") != std::string::npos;
  })) << metrics();
  EXPECT_TRUE(lab::eventually([&] {
    return ctl.log().find("unauthenticated") != std::string::npos;
  })) << ctl.log();
  // The kubelet rotates the projected token: the file now holds a good one.
  std::ofstream(token_file + ".new") << "controller-token\n";
  std::rename((token_file + ".new").c_str(), token_file.c_str());
  EXPECT_TRUE(lab::eventually(
      [&] { return metrics().find("\nnsegress_controller_leader 1\n") != std::string::npos; },
      std::chrono::seconds(30)))
      << ctl.log();
  EXPECT_NE(ctl.log().find("token re-read"), std::string::npos) << ctl.log();
  ctl.signal(SIGTERM);
  EXPECT_EQ(ctl.wait(), 0);
}

TEST_F(KubeApi, WatchFromACompactedVersionGets410Gone) {
  auto c = client();
  auto first = c.request("POST", "/api/v1/namespaces", R"({"metadata":{"name":"old-rv"}})");
  ASSERT_TRUE(first);
  const std::string rv = json::parse(first->body)["metadata"]["resourceVersion"];
  for (int i = 0; i < 5; ++i) {
    auto r = c.request("PATCH", "/api/v1/namespaces/old-rv",
                       R"({"metadata":{"labels":{"n":")" + std::to_string(i) + R"("}}})",
                       "application/merge-patch+json");
    ASSERT_TRUE(r);
  }
  // etcd is compacted every 10 s here: then the old version is gone and a
  // watch from it must be answered with 410 Gone (the client relists).
  bool gone = lab::eventually(
      [&] {
        int code = 0;
        auto w = c.watch(
            "/api/v1/namespaces?watch=1&resourceVersion=" + rv + "&timeoutSeconds=2",
            [&](const std::string& line) {
              auto e = json::parse(line, nullptr, false);
              if (e.is_object() && e["type"] == "ERROR") code = e["object"].value("code", 0);
              return false;
            },
            std::chrono::seconds(10));
        return (w && *w == 410) || code == 410;
      },
      std::chrono::seconds(45));
  EXPECT_TRUE(gone) << "expected 410 Gone for resourceVersion " << rv;
}

TEST_F(KubeApi, InformerResumesAfterAnApiServerRestart) {
  std::atomic<int> changes{0};
  NsInformer ni(env->admin(), "/api/v1/namespaces", [&] { ++changes; });
  auto& inf = ni.inf;
  inf.start();
  ASSERT_TRUE(lab::eventually([&] { return inf.synced(); }, std::chrono::seconds(20)));
  auto c = client();
  ASSERT_EQ(
      c.request("POST", "/api/v1/namespaces", R"({"metadata":{"name":"inf-before"}})")->status,
      201);
  ASSERT_TRUE(lab::eventually([&] { return ni.names().count("inf-before") == 1; },
                              std::chrono::seconds(20)));
  env->restartApiserver();
  ASSERT_EQ(c.request("POST", "/api/v1/namespaces", R"({"metadata":{"name":"inf-after"}})")->status,
            201);
  EXPECT_TRUE(
      lab::eventually([&] { return ni.names().count("inf-after") == 1; }, std::chrono::seconds(30)))
      << "the informer must resume after the API server comes back";
  EXPECT_TRUE(ni.names().count("inf-before")) << "and keep what it knew";
  inf.stop();
  const auto st = inf.stats();
  EXPECT_GE(st.watches, 2u) << "the watch was re-established";
}

TEST_F(KubeApi, InformerListsInPages) {
  // Page size 1: the API server's namespaces span several pages; the cache
  // must equal one unpaginated list.
  auto c = client();
  auto all = c.request("GET", "/api/v1/namespaces");
  ASSERT_TRUE(all && all->status == 200);
  std::set<std::string> want;
  const json listed = json::parse(all->body);
  for (const auto& i : listed["items"]) want.insert(i["metadata"]["name"].get<std::string>());
  ASSERT_GE(want.size(), 3u);
  kube::InformerOptions o;
  o.page_size = 1;
  NsInformer ni(
      env->admin(), "/api/v1/namespaces", [] {}, o);
  auto& inf = ni.inf;
  inf.start();
  ASSERT_TRUE(lab::eventually([&] { return inf.synced(); }, std::chrono::seconds(20)));
  std::set<std::string> got = ni.names();
  inf.stop();
  EXPECT_TRUE(std::includes(got.begin(), got.end(), want.begin(), want.end()));
  EXPECT_GE(inf.stats().list_pages, want.size());
}

TEST_F(KubeApi, InformerRelistsAfter410Gone) {
  // The informer watches a selector that matches nothing that changes, so
  // its resourceVersion stays at the list's while other writes move etcd on
  // and the compaction (every 10 s here) removes it. When its watch ends
  // (timeoutSeconds=20) it resumes from that version, gets 410 Gone, and
  // must relist — and then see what was created meanwhile.
  NsInformer ni(env->admin(), "/api/v1/namespaces?labelSelector=inf410%3Dyes", [] {});
  auto& inf = ni.inf;
  inf.start();
  ASSERT_TRUE(lab::eventually([&] { return inf.synced(); }, std::chrono::seconds(20)));
  auto c = client();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(c.request("POST", "/api/v1/namespaces",
                          R"({"metadata":{"name":"inf410-noise-)" + std::to_string(i) + R"("}})"));
  EXPECT_TRUE(
      lab::eventually([&] { return inf.stats().relists_410 >= 1; }, std::chrono::seconds(60)))
      << "lists " << inf.stats().lists << ", watches " << inf.stats().watches;
  EXPECT_TRUE(lab::eventually([&] { return inf.stats().lists >= 2; })) << "relisted";
  ASSERT_EQ(c.request("POST", "/api/v1/namespaces",
                      R"({"metadata":{"name":"inf410-match","labels":{"inf410":"yes"}}})")
                ->status,
            201);
  EXPECT_TRUE(lab::eventually([&] { return ni.names().count("inf410-match") == 1; }))
      << "the relisted informer keeps watching";
  EXPECT_EQ(ni.names().size(), 1u) << "only what the selector matches";
  inf.stop();
}

TEST_F(KubeApi, ApiServerRestartIsAnErrorThenRecovers) {
  auto c = client();
  env->stopApiserver();
  auto down = c.request("GET", "/api/v1/namespaces");
  EXPECT_FALSE(down) << "a stopped API server is an error, not a hang";
  env->startApiserver();
  auto up = c.request("GET", "/api/v1/namespaces");
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->status, 200);
}

// ---- leader election -----------------------------------------------------------

int64_t monoMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

volatile sig_atomic_t stop_requested = 0;

// A replica, shaped like the controller: one thread ticks the elector every
// retry period; the work loop checks isLeader() every 10 ms and "acts" (logs
// the time) only while it is leader.
[[noreturn]] void replica(const std::string& id, const std::string& log) {
  signal(SIGTERM, [](int) { stop_requested = 1; });
  kube::Client c(env->config("controller-token"),
                 kube::ClientOptions{100, 100, std::chrono::seconds(2)});
  kube::LeaderElector e(
      c, SystemClock::instance(),
      kube::LeaderOptions{"nsegress-system", "nsegress-controller", id,
                          std::chrono::milliseconds(2000), std::chrono::milliseconds(1500),
                          std::chrono::milliseconds(200)});
  std::thread ticker([&] {
    while (!stop_requested) {
      e.tick();
      usleep(200000);
    }
  });
  FILE* f = fopen(log.c_str(), "w");
  const int64_t end = monoMs() + 30000;
  while (!stop_requested && monoMs() < end) {
    if (e.isLeader()) {
      fprintf(f, "%lld\n", static_cast<long long>(monoMs()));
      fflush(f);
    }
    usleep(10000);
  }
  stop_requested = 1;
  ticker.join();
  e.release();
  fclose(f);
  _exit(0);
}

std::vector<int64_t> acts(const std::string& log) {
  std::vector<int64_t> out;
  std::ifstream in(log);
  for (long long t; in >> t;) out.push_back(t);
  return out;
}

// Leadership terms: runs of acts with gaps under 300 ms.
std::vector<std::pair<int64_t, int64_t>> terms(const std::vector<int64_t>& a) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (auto t : a) {
    if (out.empty() || t - out.back().second > 300)
      out.push_back({t, t});
    else
      out.back().second = t;
  }
  return out;
}

TEST_F(KubeApi, TwoReplicasNeverBothActAsLeader) {
  applyManifests();
  const std::string la = "/tmp/nsegress-leader-a-" + std::to_string(getpid());
  const std::string lb = "/tmp/nsegress-leader-b-" + std::to_string(getpid());
  pid_t a = fork();
  if (a == 0) replica("replica-a", la);
  ASSERT_TRUE(lab::eventually([&] { return !acts(la).empty(); }, std::chrono::seconds(15)))
      << "a never led";
  pid_t b = fork();
  if (b == 0) replica("replica-b", lb);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_TRUE(acts(lb).empty()) << "b acted while a held the lease";
  // a freezes (a long GC pause, a partition) for longer than the lease.
  kill(a, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  kill(a, SIGCONT);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // b leaves gracefully: a takes over without waiting for the lease to expire.
  const int64_t bye = monoMs();
  kill(b, SIGTERM);
  waitpid(b, nullptr, 0);
  ASSERT_TRUE(lab::eventually(
      [&] {
        auto x = acts(la);
        return !x.empty() && x.back() > bye;
      },
      std::chrono::seconds(10)));
  kill(a, SIGTERM);
  waitpid(a, nullptr, 0);

  const auto ta = terms(acts(la)), tb = terms(acts(lb));

  ASSERT_FALSE(tb.empty()) << "b took over while a was frozen";
  for (const auto& x : ta)
    for (const auto& y : tb)
      EXPECT_TRUE(x.second < y.first || y.second < x.first)
          << "a led [" << x.first << "," << x.second << "] while b led [" << y.first << ","
          << y.second << "]";
  int64_t first_after = 0;
  for (auto t : acts(la))
    if (t > bye) {
      first_after = t;
      break;
    }
  EXPECT_LT(first_after - bye, 1500) << "graceful hand-over must not wait for the lease to expire";
  std::remove(la.c_str());
  std::remove(lb.c_str());
}

// ---- the ledger in the API server: split brain ----------------------------------

World splitWorld(const std::vector<std::string>& namespaces) {
  World w;
  Pool p;
  p.name = "sb";
  p.ranges = {{*IpAddress::parse("192.0.2.1"), *IpAddress::parse("192.0.2.6")}};
  p.quarantine = 1;  // seconds: the race below crosses quarantines too
  w.pools["sb"] = p;
  w.nodes["gw"] = Node{"gw", {}, true};
  for (const auto& n : namespaces) w.namespaces[n] = Namespace{n, {}, {{kPoolAnnotation, "sb"}}};
  return w;
}

TEST_F(KubeApi, TwoControllersRacingForOneAddressOnlyOneWins) {
  applyManifests();
  auto c1 = client("controller-token"), c2 = client("controller-token");
  controller::cluster::KubeLedgerStore s1(c1, SystemClock::instance()),
      s2(c2, SystemClock::instance());
  auto now = [] { return static_cast<Seconds>(time(nullptr)); };
  controller::Controller a(s1, now, "", controller::ReleaseGuard::offForTest()),
      b(s2, now, "", controller::ReleaseGuard::offForTest());
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  // Split brain: each sees a different namespace; both pick 192.0.2.1.
  auto won = a.reconcile(splitWorld({"race-a"}));
  ASSERT_TRUE(won) << won.error().message;
  auto lost = b.reconcile(splitWorld({"race-b"}));
  ASSERT_FALSE(lost) << "the second claim of 192.0.2.1 must be refused";
  EXPECT_NE(lost.error().message.find("192.0.2.1"), std::string::npos) << lost.error().message;
  // Even if the store's knowledge is fresher than the controller's, a write
  // is conditional on the version the decision was based on.
  {
    auto l2 = s2.load();
    ASSERT_TRUE(l2) << l2.error().message;
  }
  auto retry = b.reconcile(splitWorld({"race-b"}));  // reloaded: takes the next one
  ASSERT_TRUE(retry) << retry.error().message;
  auto ledger = s1.load();
  ASSERT_TRUE(ledger);
  EXPECT_EQ(ledger->at(*IpAddress::parse("192.0.2.1")).ns, "race-a");
  EXPECT_EQ(ledger->at(*IpAddress::parse("192.0.2.2")).ns, "race-b");
  std::string out;
  EXPECT_EQ(env->kubectl("get egressips", &out), 0);
  EXPECT_NE(out.find("race-a"), std::string::npos) << out;
  clearLedger();
}

TEST_F(KubeApi, SplitBrainNeverDoubleAssignsOrBreaksQuarantine) {
  applyManifests();
  std::vector<std::pair<int64_t, AddressRecord>> writes;
  std::mutex mu;
  uint64_t conflicts = 0, commits = 0;
  auto run = [&](unsigned seed) {
    lab::NetnsEnter in(env->netns());
    auto c = client("controller-token");
    controller::cluster::KubeLedgerStore store(c, SystemClock::instance());
    store.recordWritesForTest();
    controller::Controller ctl(
        store, [] { return static_cast<Seconds>(time(nullptr)); }, "",
        controller::ReleaseGuard::offForTest());
    ASSERT_TRUE(ctl.start());
    std::mt19937 rng(seed);
    for (int round = 0; round < 40; ++round) {
      std::vector<std::string> view;  // this replica's (diverging) view of the world
      for (int i = 0; i < 8; ++i)
        if (rng() % 2) view.push_back("split-" + std::to_string(i));
      auto r = ctl.reconcile(splitWorld(view));
      std::lock_guard l(mu);
      r ? ++commits : ++conflicts;
      if (round % 8 == 7) std::this_thread::sleep_for(std::chrono::milliseconds(600));
    }
    std::lock_guard l(mu);
    auto w = store.writesForTest();
    writes.insert(writes.end(), w.begin(), w.end());
  };
  std::thread t1(run, 11u), t2(run, 22u);
  t1.join();
  t2.join();
  EXPECT_GT(conflicts, 0u) << "the two replicas must actually have collided";
  EXPECT_GT(commits, 10u) << "and mostly succeeded";
  EXPECT_GT(writes.size(), 10u);
  // Replay every successful write of both replicas in the API server's order.
  std::sort(writes.begin(), writes.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  std::map<IpAddress, AddressRecord> last;
  for (const auto& [rv, r] : writes) {
    auto it = last.find(r.ip);
    if (it != last.end() && r.state == AddressState::kAssigned) {
      const auto& prev = it->second;
      EXPECT_FALSE(prev.state == AddressState::kAssigned && prev.ns != r.ns)
          << r.ip.str() << " went from " << prev.ns << " to " << r.ns << " without a release (rv "
          << rv << ")";
      EXPECT_FALSE(prev.state == AddressState::kQuarantined && prev.ns != r.ns &&
                   r.assigned_at < prev.quarantine_until)
          << r.ip.str() << " given to " << r.ns << " during " << prev.ns << "'s quarantine (rv "
          << rv << ")";
    }
    last[r.ip] = r;
  }
  std::cerr << "split brain: " << commits << " commits, " << conflicts
            << " refused by the API server, " << writes.size() << " writes replayed\n";
  clearLedger();
}

// ---- the controller in cluster mode -----------------------------------------------

TEST_F(KubeApi, ClusterModeAnnotateAssignsThenDeletionQuarantines) {
  applyManifests();
  const std::string d = env->dir();
  std::ofstream(d + "/cluster.yaml") << R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: lab}
spec:
  addresses: ["198.51.100.200-198.51.100.203"]
  nodeSelector: {matchLabels: {nsegress.io/gateway: "true"}}
---
apiVersion: v1
kind: Node
metadata: {name: gw-k1, labels: {nsegress.io/gateway: "true"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: pay, annotations: {nsegress.io/pool: lab}}
)";
  std::string out;
  ASSERT_EQ(env->kubectl("apply -f " + d + "/cluster.yaml", &out), 0) << out;
  lab::Process ctl({"/usr/bin/ip", "netns", "exec", env->netns(), NSEGRESS_CONTROLLER_BIN,
                    "--kubernetes", "--kubeconfig", env->writeKubeconfig("controller-token"),
                    "--identity", "cluster-test", "--gateway-state-dir", d + "/gw-state",
                    "--listen", "127.0.0.1:18181", "--resync-seconds", "2"},
                   d + "/controller.log");
  auto annotation = [&] {
    std::string v;
    env->kubectl("get ns pay -o jsonpath='{.metadata.annotations.nsegress\\.io/assigned-ip}'", &v);
    return v;
  };
  ASSERT_TRUE(
      lab::eventually([&] { return annotation() == "198.51.100.200"; }, std::chrono::seconds(60)))
      << "annotation: " << annotation() << "\n"
      << ctl.log();
  env->kubectl("get ns pay -o jsonpath='{.metadata.finalizers}'", &out);
  EXPECT_NE(out.find("nsegress.io/release"), std::string::npos) << out;
  env->kubectl("get events -n pay", &out);
  EXPECT_NE(out.find("Assigned"), std::string::npos) << out << "\n" << ctl.log();
  // Events name the object they regard by uid, and the replica that wrote them.
  std::string uid, ev;
  env->kubectl("get ns pay -o jsonpath='{.metadata.uid}'", &uid);
  env->kubectl(
      "get events.events.k8s.io -n pay -o "
      "jsonpath='{.items[0].regarding.uid}/{.items[0].reportingInstance}'",
      &ev);
  EXPECT_EQ(ev, uid + "/cluster-test");

  // Pools: the API server refuses bad syntax at the door; what only the
  // controller can judge is marked at once, with the reason in a column.
  const std::string bad = d + "/bad-pools.yaml";
  for (const char* addr : {"10.0.0.0/33", "hello-world", "10.0.0.256"}) {
    std::ofstream(bad) << "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: "
                          "syntax}\nspec: {addresses: [\""
                       << addr << "\"]}\n";
    EXPECT_NE(env->kubectl("apply --dry-run=server -f " + bad, &out), 0) << addr << ": " << out;
    EXPECT_NE(out.find("spec.addresses"), std::string::npos) << out;
  }
  std::ofstream(bad) << R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: backwards}
spec: {addresses: ["198.51.100.230-198.51.100.220"]}
---
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: typo}
spec:
  addresses: ["198.51.100.240/30"]
  namespaceSelector: {matchLabel: {team: pay}}
)";
  ASSERT_EQ(env->kubectl("apply -f " + bad, &out), 0) << out;
  auto ready = [&](const std::string& pool) {
    std::string v;
    env->kubectl(
        "get egresspool " + pool +
            " -o jsonpath='{.status.conditions[0].status} {.status.conditions[0].message}'",
        &v);
    return v;
  };
  EXPECT_TRUE(lab::eventually([&] { return ready("backwards").rfind("False ", 0) == 0; }))
      << ready("backwards");
  EXPECT_TRUE(lab::eventually([&] {
    return ready("typo").find("False spec.namespaceSelector.matchLabel: unknown field") == 0;
  })) << ready("typo")
      << "\n"
      << "a misspelt selector must never select everyone";
  env->kubectl("get egresspools", &out);
  EXPECT_NE(out.find("READY"), std::string::npos) << out;
  EXPECT_NE(out.find("unknown field"), std::string::npos) << out;
  env->kubectl("delete egresspool backwards typo", &out);
  std::string state;
  ASSERT_TRUE(
      lab::eventually([&] { return lab::run("cat " + d + "/gw-state/gw-k1.json", &state) == 0; }));
  auto gs = parseDesiredState(state);
  ASSERT_TRUE(gs) << state;
  ASSERT_EQ(gs->namespaces.size(), 1u);
  EXPECT_EQ(gs->namespaces[0].name, "pay");
  EXPECT_EQ(gs->namespaces[0].egress_v4, IpAddress::parse("198.51.100.200"));
  env->kubectl("get egressips", &out);
  EXPECT_NE(out.find("198.51.100.200"), std::string::npos) << out;
  auto poolStatus = [&] {
    std::string v;
    env->kubectl(
        "get egresspool lab -o "
        "jsonpath='{.status.size}/{.status.assigned}/{.status.quarantined}/{.status.free}/"
        "{.status.conditions[0].status}'",
        &v);
    return v;
  };
  std::string metrics;
  lab::run("ip netns exec " + env->netns() + " curl -s 127.0.0.1:18181/metrics", &metrics);
  EXPECT_NE(metrics.find("\nnsegress_controller_leader 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("nsegress_controller_ledger_conflicts_total"), std::string::npos);
  EXPECT_TRUE(lab::eventually([&] { return poolStatus() == "4/1/0/3/True"; }))
      << poolStatus() << "\n"
      << ctl.log();

  // Deletion: the finalizer holds the namespace until the release is recorded.
  ASSERT_EQ(env->kubectl("delete ns pay --wait=false", &out), 0) << out;
  auto eipState = [&] {
    std::string v;
    env->kubectl("get egressip 198.51.100.200 -o jsonpath='{.status.state}/{.status.namespace}'",
                 &v);
    return v;
  };
  EXPECT_TRUE(
      lab::eventually([&] { return eipState() == "Quarantined/pay"; }, std::chrono::seconds(30)))
      << eipState() << "\n"
      << ctl.log();
  EXPECT_TRUE(lab::eventually(
      [&] {
        std::string f;
        env->kubectl("get ns pay -o jsonpath='{.metadata.finalizers}'", &f);
        return f.find("nsegress.io/release") == std::string::npos;
      },
      std::chrono::seconds(30)))
      << "the release finalizer must be removed once the address is quarantined";
  EXPECT_TRUE(lab::eventually([&] { return poolStatus() == "4/0/1/3/True"; })) << poolStatus();
  // With the finalizer gone, the namespace controller completes the deletion.
  EXPECT_TRUE(lab::eventually([&] { return env->kubectl("get ns pay", &out) != 0; },
                              std::chrono::seconds(60)))
      << "namespace pay still exists: " << out;

  // The address's history is durable (in its EgressIP status): a new
  // controller process still answers "who had this IP" for the old tenant.
  std::string kinds, first_at;
  env->kubectl("get egressip 198.51.100.200 -o jsonpath='{.status.history[*].kind}'", &kinds);
  EXPECT_EQ(kinds, "Assigned Released");
  env->kubectl("get egressip 198.51.100.200 -o jsonpath='{.status.history[0].at}'", &first_at);
  ctl.signal(SIGTERM);
  EXPECT_EQ(ctl.wait(), 0);
  // Readers find the leader through the Endpoints of the selector-less
  // Service, which the leader keeps listing itself alone (no Pod is patched).
  auto endpoints = [&] {
    std::string v;
    env->kubectl(
        "get endpoints -n nsegress-system nsegress-controller "
        "-o jsonpath='{.subsets[*].addresses[*].ip}'",
        &v);
    return v;
  };
  auto start = [&](const std::string& id, const std::string& port, const std::string& ip) {
    return std::make_unique<lab::Process>(
        std::vector<std::string>{"/usr/bin/ip",
                                 "netns",
                                 "exec",
                                 env->netns(),
                                 NSEGRESS_CONTROLLER_BIN,
                                 "--kubernetes",
                                 "--kubeconfig",
                                 env->writeKubeconfig("controller-token"),
                                 "--identity",
                                 id,
                                 "--pod-name",
                                 id,
                                 "--pod-ip",
                                 ip,
                                 "--listen",
                                 "127.0.0.1:" + port,
                                 "--metrics-listen",
                                 "127.0.0.1:" + std::to_string(std::stoi(port) + 1000),
                                 "--resync-seconds",
                                 "30",
                                 "--lease-duration-ms",
                                 "4000",
                                 "--renew-deadline-ms",
                                 "3000",
                                 "--retry-period-ms",
                                 "500"},
        d + "/controller-" + id + ".log");
  };
  auto get = [&](const std::string& port, const std::string& path) {
    std::string body;
    lab::run("ip netns exec " + env->netns() +
                 " curl -s -m 2 -w ' %{http_code}' 127.0.0.1:" + port + "'" + path + "'",
             &body);
    return body;
  };
  auto serves = [&](const std::string& port) {
    return get(port, "/feeds/edl/lab").find(" 200") != std::string::npos;
  };
  auto leader = start("cluster-test-2", "18182", "10.96.7.2");
  ASSERT_TRUE(lab::eventually([&] { return get("18182", "/readyz") == "ok\n 200"; },
                              std::chrono::seconds(30)))
      << get("18182", "/readyz") << "\n"
      << leader->log();
  const std::string who = get("18182", "/api/v1/who-had?ip=198.51.100.200&at=" + first_at);
  EXPECT_NE(who.find("\"namespace\": \"pay\""), std::string::npos) << who;
  EXPECT_NE(who.find(" 200"), std::string::npos) << who;
  // The metrics listener serves metrics only; the API listener no metrics.
  std::string m = get("19182", "/metrics");
  EXPECT_NE(m.find("nsegress_controller_reconcile_seconds_count"), std::string::npos) << m;
  EXPECT_TRUE(lab::eventually([&] {
    m = get("19182", "/metrics");
    return m.find("nsegress_controller_reconcile_seconds_count 0\n") == std::string::npos;
  })) << "observed in cluster mode too\n"
      << m << "\n"
      << leader->log();
  EXPECT_NE(get("19182", "/feeds/edl/lab").find(" 404"), std::string::npos);
  EXPECT_NE(get("18182", "/metrics").find(" 404"), std::string::npos);
  // A standby is alive but not ready, and hands out no list.
  auto standby = start("cluster-test-3", "18183", "10.96.7.3");
  ASSERT_TRUE(lab::eventually([&] { return get("19183", "/healthz") == "ok\n 200"; }));
  EXPECT_NE(get("18183", "/readyz").find("503"), std::string::npos);
  EXPECT_NE(get("18183", "/feeds/edl/lab").find("503"), std::string::npos);
  EXPECT_TRUE(serves("18182"));
  EXPECT_TRUE(lab::eventually([&] { return endpoints() == "10.96.7.2"; })) << endpoints();

  // Hand-overs, with both replicas polled all along: never both serving.
  std::atomic<bool> polling{true};
  std::atomic<int> both{0};
  std::thread poller([&] {
    while (polling) {
      if (serves("18182") && serves("18183")) ++both;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  auto servedWithin = [&](const std::string& port, std::chrono::milliseconds limit) {
    const auto t = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t < limit + std::chrono::seconds(10)) {
      if (serves(port))
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::chrono::milliseconds::max();
  };
  // Graceful: SIGTERM releases the Lease after the leader stopped serving.
  leader->signal(SIGTERM);
  const auto graceful = servedWithin("18183", std::chrono::seconds(2));
  EXPECT_EQ(leader->wait(), 0);
  EXPECT_LE(graceful.count(), 2000) << "a graceful hand-over serves within 2 s\n" << standby->log();
  EXPECT_TRUE(lab::eventually([&] { return endpoints() == "10.96.7.3"; })) << endpoints();
  // Unplanned: kill -9 of the leader; the standby serves within the lease
  // duration (4 s) + 2 s.
  auto again = start("cluster-test-2", "18182", "10.96.7.2");
  ASSERT_TRUE(lab::eventually([&] { return get("19182", "/healthz") == "ok\n 200"; }));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  standby->signal(SIGKILL);
  standby->wait();
  const auto unplanned = servedWithin("18182", std::chrono::seconds(6));
  EXPECT_LE(unplanned.count(), 6000) << "after kill -9: within lease duration + 2 s\n"
                                     << again->log();
  EXPECT_TRUE(lab::eventually([&] { return endpoints() == "10.96.7.2"; })) << endpoints();
  polling = false;
  poller.join();
  EXPECT_EQ(both.load(), 0) << "two replicas served data at the same time";
  std::cerr << "[hand-over] graceful " << graceful.count() << " ms, kill -9 " << unplanned.count()
            << " ms (lease 4000 ms)\n";
  again->signal(SIGTERM);
  EXPECT_EQ(again->wait(), 0);
  EXPECT_EQ(endpoints(), "") << "the last leader removes itself on the way out";
}

// ---- the whole story in a cluster: controller + gateway, real traffic --------------

// A Pod object with its status as a kubelet would report it.
void createPod(kube::Client& c, const std::string& ns, const std::string& name,
               const std::string& ip, const std::string& node = "worker-1") {
  json pod{{"apiVersion", "v1"},
           {"kind", "Pod"},
           {"metadata", {{"name", name}, {"namespace", ns}}},
           {"spec", {{"nodeName", node}, {"containers", {{{"name", "app"}, {"image", "app"}}}}}}};
  auto r = c.request("POST", "/api/v1/namespaces/" + ns + "/pods", pod.dump());
  ASSERT_TRUE(r && r->status == 201) << (r ? r->body : r.error().message);
  json st{{"status", {{"phase", "Running"}, {"podIP", ip}, {"podIPs", {{{"ip", ip}}}}}}};
  r = c.request("PATCH", "/api/v1/namespaces/" + ns + "/pods/" + name + "/status", st.dump(),
                "application/merge-patch+json");
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
}

// A Node's status as its kubelet would report it: Ready, one InternalIP.
void setNodeStatus(kube::Client& c, const std::string& node, const std::string& ip) {
  json st{{"status",
           {{"addresses", {{{"type", "InternalIP"}, {"address", ip}}}},
            {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}};
  auto r = c.request("PATCH", "/api/v1/nodes/" + node + "/status", st.dump(),
                     "application/merge-patch+json");
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : r.error().message);
}

// The firewall team's side in cluster mode: feeds over TLS with credentials
// from a file, the decommission handshake stored in EgressIP status (the
// CRD takes the new state), acknowledged over the API with a write role.
TEST_F(KubeApi, ClusterModeFeedsOverTlsAndTheDecommissionHandshake) {
  applyManifests();
  const std::string d = env->dir();
  std::ofstream(d + "/fw.yaml") << R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: fwlab}
spec:
  addresses: ["198.51.100.210-198.51.100.211"]
  nodeSelector: {matchLabels: {nsegress.io/fwlab: "true"}}
  quarantine: 1h
  acknowledgeRemoval: true
---
apiVersion: v1
kind: Node
metadata: {name: gw-fw, labels: {nsegress.io/fwlab: "true"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: fwshop, annotations: {nsegress.io/pool: fwlab}}
)";
  std::string out;
  ASSERT_EQ(env->kubectl("apply -f " + d + "/fw.yaml", &out), 0) << out;
  testing::TestCa ca;
  const auto server = ca.issue("localhost");
  testing::writeText(d + "/ca.pem", ca.certPem());
  testing::writeText(d + "/tls.crt", server.cert);
  testing::writeText(d + "/tls.key", server.key);
  testing::writeText(d + "/auth.yaml", R"(principals:
  - {name: panorama, password: "panorama feed secret", role: read, pools: [fwlab]}
  - {name: secops, token: "secops write token 1", role: write}
)");
  lab::Process ctl({"/usr/bin/ip",
                    "netns",
                    "exec",
                    env->netns(),
                    NSEGRESS_CONTROLLER_BIN,
                    "--kubernetes",
                    "--kubeconfig",
                    env->writeKubeconfig("controller-token"),
                    "--identity",
                    "fw-test",
                    "--listen",
                    "",
                    "--tls-listen",
                    "127.0.0.1:18443",
                    "--tls-cert",
                    d + "/tls.crt",
                    "--tls-key",
                    d + "/tls.key",
                    "--auth-file",
                    d + "/auth.yaml",
                    "--resync-seconds",
                    "2"},
                   d + "/fw-controller.log");
  // curl inside the API server's namespace; prints the body then the code.
  auto curl = [&](const std::string& args) {
    std::string o;
    lab::run("ip netns exec " + env->netns() + " curl -s -m 5 --cacert " + d +
                 "/ca.pem -w ' %{http_code}' " + args,
             &o);
    return o;
  };
  const std::string feed = "https://localhost:18443/feeds/edl/fwlab";
  const std::string reader = "-u 'panorama:panorama feed secret' ";
  ASSERT_TRUE(lab::eventually(
      [&] { return curl(reader + feed).find("198.51.100.210") != std::string::npos; },
      std::chrono::seconds(60)))
      << curl(reader + feed) << "\n"
      << ctl.log();
  EXPECT_EQ(curl(feed), "{\n  \"error\": \"unauthorized\"\n}\n 401");
  EXPECT_NE(curl("-u 'panorama:wrong' " + feed).find(" 401"), std::string::npos);
  EXPECT_NE(curl(reader + "https://localhost:18443/api/v1/addresses").find(" 403"),
            std::string::npos)
      << "a pool-limited reader gets its feeds only";
  // Plain HTTP to the TLS port gets no list.
  std::string plain;
  lab::run(
      "ip netns exec " + env->netns() + " curl -s -m 3 http://127.0.0.1:18443" + "/feeds/edl/fwlab",
      &plain);
  EXPECT_EQ(plain.find("198.51.100.210"), std::string::npos);

  // Decommission: the address waits for the firewall side.
  ASSERT_EQ(env->kubectl("delete ns fwshop --wait=false", &out), 0) << out;
  auto eip = [&] {
    std::string v;
    env->kubectl(
        "get egressip 198.51.100.210 -o "
        "jsonpath='{.status.state}/{.status.namespace}/{.status.quarantineUntil}'",
        &v);
    return v;
  };
  ASSERT_TRUE(lab::eventually([&] { return eip() == "PendingFirewallCleanup/fwshop/"; },
                              std::chrono::seconds(60)))
      << eip() << "\n"
      << ctl.log();
  EXPECT_TRUE(lab::eventually([&] {
    return curl(reader + feed).find("198.51.100.210") == std::string::npos;
  })) << "out of the feed";
  const std::string ack = "-X POST https://localhost:18443/api/v1/ack?ip=198.51.100.210";
  EXPECT_NE(curl(reader + ack).find(" 403"), std::string::npos) << "a read role cannot ack";
  const std::string ack_out = curl("-H 'Authorization: Bearer secops write token 1' " + ack);
  EXPECT_NE(ack_out.find(" 202"), std::string::npos) << ack_out;
  ASSERT_TRUE(lab::eventually([&] { return eip().rfind("Quarantined/fwshop/20", 0) == 0; },
                              std::chrono::seconds(30)))
      << eip() << "\n"
      << ctl.log();
  env->kubectl("get egressip 198.51.100.210 -o jsonpath='{.status.history}'", &out);
  EXPECT_NE(out.find("RemovalAcknowledged"), std::string::npos) << out;
  EXPECT_NE(out.find("secops"), std::string::npos) << out;
}

TEST_F(KubeApi, ClusterModeEndToEndPodTrafficLeavesWithTheNamespacesAddress) {
  applyManifests();
  const auto t0 = std::chrono::steady_clock::now();
  auto phase = [&](const char* what) {
    std::cerr << "[e2e +"
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
              << " s] " << what << "\n";
  };
  // A gateway node: the lab's gw namespace (uplink to an "outside" host that
  // resolves 203.0.113.0/24 by ARP), linked to the API server.
  lab::Lab lab("kgw");
  lab.addPod("web", "10.77.0.5");
  lab.startServers();
  const std::string server = env->linkTo(lab.gw());
  const std::string d = env->dir();
  std::ofstream(d + "/e2e.yaml") << R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: edge}
spec:
  addresses: ["203.0.113.40-203.0.113.43"]
  nodeSelector: {matchLabels: {lab: e2e}}
---
apiVersion: v1
kind: Node
metadata: {name: gw-k2, labels: {lab: e2e}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {nsegress.io/pool: edge}}
)";
  std::string out;
  ASSERT_EQ(env->kubectl("apply -f " + d + "/e2e.yaml", &out), 0) << out;
  auto admin = client();
  createPod(admin, "shop", "web", "10.77.0.5");

  // A long resync: every change below must reach the gateway through its
  // watches, not through a periodic re-read.
  const std::vector<std::string> gw_argv = {
      lab::gatewayPath(),   "--uplink",
      lab::Lab::kUplink,    "--kubernetes",
      "--kubeconfig",       env->writeKubeconfig("gateway-token", server),
      "--node-name",        "gw-k2",
      "--resync-seconds",   "600",
      "--garp-interval-ms", "50",
      "--metrics-address",  "127.0.0.1:19464"};
  lab::Process* gw = &lab.spawn(lab.gw(), gw_argv, "gateway.log");
  auto ctl = std::make_unique<lab::Process>(
      std::vector<std::string>{"/usr/bin/ip", "netns", "exec", env->netns(),
                               NSEGRESS_CONTROLLER_BIN, "--kubernetes", "--kubeconfig",
                               env->writeKubeconfig("controller-token"), "--identity", "e2e",
                               "--resync-seconds", "2"},
      d + "/controller-e2e.log");
  auto leavesAs = [&](const std::string& pod, const std::string& tag) {
    lab.send(pod, "udp", tag, 2, 5, /*fresh=*/true, /*timeout_ms=*/300);
    auto peers = lab.peersOf(tag);
    return peers.empty() ? std::string("(nothing arrived)") : *peers.begin();
  };
  int n = 0;
  auto tag = [&] { return "k" + std::to_string(++n); };
  ASSERT_TRUE(lab::eventually([&] { return leavesAs("web", tag()) == "203.0.113.40"; },
                              std::chrono::seconds(60)))
      << "last: " << leavesAs("web", tag()) << "\ngateway:\n"
      << gw->log() << "\ncontroller:\n"
      << ctl->log();
  EXPECT_NE(lab.exec(lab.gw(), "ip -4 addr show dev up0").find("203.0.113.40/32"),
            std::string::npos);
  phase("pod traffic leaves as 203.0.113.40");
  const std::string gw_metrics = lab.exec(lab.gw(), "curl -s 127.0.0.1:19464/metrics");
  EXPECT_NE(gw_metrics.find("nsegress_gateway_state_source_synced 1"), std::string::npos)
      << gw_metrics;
  EXPECT_NE(gw_metrics.find("nsegress_gateway_state_source_warnings 0"), std::string::npos);

  // The controller is down: the gateway still follows pod churn from the API.
  ctl->signal(SIGTERM);
  EXPECT_EQ(ctl->wait(), 0);
  phase("controller stopped");
  lab.addPod("api", "10.77.0.6");
  EXPECT_EQ(leavesAs("api", tag()), "10.77.0.6") << "not a pod of shop yet: not translated";
  createPod(admin, "shop", "api", "10.77.0.6");
  EXPECT_TRUE(lab::eventually([&] { return leavesAs("api", tag()) == "203.0.113.40"; },
                              std::chrono::seconds(10)))
      << gw->log();

  phase("new pod translated without the controller");
  // The API server is down: fail-static, the data path stays as it was —
  // also across a restart of the agent, which cannot list anything.
  env->stopApiserver();
  EXPECT_EQ(leavesAs("web", tag()), "203.0.113.40");
  // The metric says so at once (read at scrape time, not at the next resync).
  EXPECT_TRUE(lab::eventually(
      [&] {
        return lab.exec(lab.gw(), "curl -s 127.0.0.1:19464/metrics")
                   .find("nsegress_gateway_state_source_synced 0") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << "synced must drop while the API server is unreachable";
  gw->signal(SIGTERM);
  EXPECT_EQ(gw->wait(), 0);
  gw = &lab.spawn(lab.gw(), gw_argv, "gateway-2.log");
  EXPECT_TRUE(lab::eventually([&] {
    return gw->log().find("kernel left as found") != std::string::npos;
  })) << gw->log();
  EXPECT_EQ(leavesAs("web", tag()), "203.0.113.40");
  EXPECT_EQ(leavesAs("api", tag()), "203.0.113.40");
  env->startApiserver();
  EXPECT_TRUE(lab::eventually(
      [&] {
        return lab.exec(lab.gw(), "curl -s 127.0.0.1:19464/metrics")
                   .find("nsegress_gateway_state_source_synced 1") != std::string::npos;
      },
      std::chrono::seconds(60)))
      << gw->log();
  phase("API server back");

  // Deletion: the address is quarantined, the gateway releases it, and the
  // namespace's draining pods are dropped rather than let out unmapped.
  ctl = std::make_unique<lab::Process>(
      std::vector<std::string>{"/usr/bin/ip", "netns", "exec", env->netns(),
                               NSEGRESS_CONTROLLER_BIN, "--kubernetes", "--kubeconfig",
                               env->writeKubeconfig("controller-token"), "--identity", "e2e",
                               "--resync-seconds", "2"},
      d + "/controller-e2e-2.log");
  ASSERT_EQ(env->kubectl("delete ns shop --wait=false", &out), 0) << out;
  EXPECT_TRUE(lab::eventually(
      [&] {
        return lab.exec(lab.gw(), "ip -4 addr show dev up0").find("203.0.113.40") ==
               std::string::npos;
      },
      std::chrono::seconds(60)))
      << gw->log() << "\n"
      << ctl->log();
  phase("released after deletion");
  EXPECT_EQ(leavesAs("web", tag()), "(nothing arrived)");
  EXPECT_NE(lab.exec(lab.gw(), "nft list table inet nsegress").find("10.77.0.5"), std::string::npos)
      << "the draining pod is held fail-closed";
  env->kubectl("get egressip 203.0.113.40 -o jsonpath='{.status.state}'", &out);
  EXPECT_EQ(out, "Quarantined");
  ctl->signal(SIGTERM);
  EXPECT_EQ(ctl->wait(), 0);
  gw->signal(SIGTERM);
  EXPECT_EQ(gw->wait(), 0);
}

// A node agent in cluster mode (the lab's node `node`, the API server at
// `server`); gateways own the uplink up0.
std::vector<std::string> clusterAgentArgv(const KubeEnv& env, const std::string& node,
                                          const std::string& server, bool gateway) {
  std::vector<std::string> argv = {lab::gatewayPath(),
                                   "--uplink",
                                   gateway ? lab::Lab::kUplink : "eth0",
                                   "--underlay",
                                   "eth0",
                                   "--cluster-cidr",
                                   "10.244.0.0/16",
                                   "--kubernetes",
                                   "--kubeconfig",
                                   env.writeKubeconfig("gateway-token", server),
                                   "--node-name",
                                   node,
                                   "--resync-seconds",
                                   "600",
                                   "--garp-interval-ms",
                                   "50"};
  if (gateway) argv.push_back("--uplink-dedicated");
  return argv;
}

// Last: it uninstalls.
// Cluster mode with steering: a worker's pod leaves with its namespace's
// address through the gateway node that hosts it, both agents deriving
// their state from the real API server (Nodes' InternalIPs included).
TEST_F(KubeApi, ClusterModeSteersAWorkersPodToItsGateway) {
  applyManifests();
  lab::Lab lab("kst", lab::ClusterOptions{});
  lab.addPodOn("w1", "web", "10.244.3.2", "fd00:244:3::2");
  lab.startServers();
  const std::string to_gw = env->linkTo(lab.node("gw1"), 0);
  const std::string to_w1 = env->linkTo(lab.node("w1"), 1);
  const std::string d = env->dir();
  std::ofstream(d + "/steer.yaml") << R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: steer}
spec:
  addresses: ["203.0.113.50-203.0.113.53"]
  nodeSelector: {matchLabels: {lab: steer}}
---
apiVersion: v1
kind: Node
metadata: {name: gw1, labels: {lab: steer}}
---
apiVersion: v1
kind: Node
metadata: {name: w1}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop2, annotations: {nsegress.io/pool: steer}}
)";
  std::string out;
  ASSERT_EQ(env->kubectl("apply -f " + d + "/steer.yaml", &out), 0) << out;
  auto admin = client();
  for (const char* n : {"gw1", "w1"}) setNodeStatus(admin, n, lab::Lab::nodeIp(n));
  createPod(admin, "shop2", "web", "10.244.3.2", "w1");

  auto agent = [&](const std::string& node, const std::string& server, bool gateway) {
    return &lab.spawn(lab.node(node), clusterAgentArgv(*env, node, server, gateway),
                      "agent-" + node + ".log");
  };
  lab::Process* gw = agent("gw1", to_gw, true);
  lab::Process* w1 = agent("w1", to_w1, false);
  auto ctl = std::make_unique<lab::Process>(
      std::vector<std::string>{"/usr/bin/ip", "netns", "exec", env->netns(),
                               NSEGRESS_CONTROLLER_BIN, "--kubernetes", "--kubeconfig",
                               env->writeKubeconfig("controller-token"), "--identity", "steer",
                               "--resync-seconds", "2"},
      d + "/controller-steer.log");
  int n = 0;
  auto leavesAs = [&] {
    const std::string tag = "st" + std::to_string(++n);
    lab.send("web", "udp", tag, 2, 5, true, 300);
    auto peers = lab.peersOf(tag);
    return peers.empty() ? std::string("(nothing arrived)") : *peers.begin();
  };
  EXPECT_TRUE(
      lab::eventually([&] { return leavesAs() == "203.0.113.50"; }, std::chrono::seconds(60)))
      << "last: " << leavesAs() << "\ngateway:\n"
      << gw->log() << "\nworker:\n"
      << w1->log() << "\ncontroller:\n"
      << ctl->log();
  // Through the tunnel, with the pod's own address up to the gateway.
  std::string ct;
  lab::run("ip netns exec " + lab.node("gw1") + " conntrack -L -p udp -s 10.244.3.2", &ct);
  EXPECT_NE(ct.find("dst=203.0.113.50"), std::string::npos) << ct;
  EXPECT_NE(lab.exec(lab.node("w1"), "nft list map inet nsegress steer4").find("10.244.3.2"),
            std::string::npos);
  ctl->signal(SIGTERM);
  ctl->wait();
}

// A cluster-mode controller in the API server's namespace with the lease
// book on 10.255.0.1:4795 (the API server's side of every lab link, also
// its "Pod IP" in the Endpoints).
std::unique_ptr<lab::Process> failoverController(const std::string& id, const std::string& pod,
                                                 const std::string& key, const std::string& log) {
  return std::make_unique<lab::Process>(
      std::vector<std::string>{"/usr/bin/ip",
                               "netns",
                               "exec",
                               env->netns(),
                               NSEGRESS_CONTROLLER_BIN,
                               "--kubernetes",
                               "--kubeconfig",
                               env->writeKubeconfig("controller-token"),
                               "--identity",
                               id,
                               "--resync-seconds",
                               "2",
                               "--lease-listen",
                               "10.255.0.1:4795",
                               "--peer-key",
                               key,
                               "--pod-ip",
                               "10.255.0.1",
                               "--pod-name",
                               pod},
      env->dir() + log);
}

// Failover in cluster mode (issue 12): two gateways and a worker on the
// real API server. The leading controller runs the lease book and lists its
// lease port in its Endpoints; the gateways find it there and take their
// roles from the API (pools, nodes, the ownership Leases). The owner node is
// lost during a probe: the standby takes over within the bound, the
// ownership Lease records it (etcd arbitrated, epoch 2), the EgressIP and an
// Event say so, and `kubectl get egressips` shows the new node.
TEST_F(KubeApi, ClusterModeFailoverMovesTheAddressAndTheApiSaysSo) {
  applyManifests();
  // (Pod addresses of its own: the API server is shared with the tests before.)
  lab::Lab lab("kfo", lab::ClusterOptions{});
  lab.addPodOn("w1", "pay-w1", "10.244.3.7", "fd00:244:3::7");
  const std::string key = lab.prepareFailover({});
  lab.startServers();
  std::map<std::string, std::string> server;
  int idx = 0;
  for (const char* n : {"gw1", "gw2", "w1"}) server[n] = env->linkTo(lab.node(n), idx++);
  const std::string d = env->dir();
  std::string nodes;
  for (const char* n : {"gw1", "gw2", "w1"})
    nodes += std::string("---\napiVersion: v1\nkind: Node\nmetadata: {name: ") + n +
             (std::string(n).rfind("gw", 0) == 0 ? ", labels: {lab: failover}" : "") + "}\n";
  // A pool, nodes and a namespace of its own (the API server keeps what the
  // tests before created: pools, namespaces, gateway nodes).
  std::ofstream(d + "/failover.yaml") << R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: fopool}
spec:
  addresses: ["203.0.113.60-203.0.113.63"]
  nodeSelector: {matchLabels: {lab: failover}}
---
apiVersion: v1
kind: Namespace
metadata: {name: fopay, annotations: {nsegress.io/pool: fopool}}
)" << nodes;
  std::string out;
  ASSERT_EQ(env->kubectl("apply -f " + d + "/failover.yaml", &out), 0) << out;
  auto admin = client();
  for (const char* n : {"gw1", "gw2", "w1"}) setNodeStatus(admin, n, lab::Lab::nodeIp(n));
  createPod(admin, "fopay", "pay-w1", "10.244.3.7", "w1");

  auto ctl = failoverController("fo", "ctl-0", key, "/controller-failover.log");
  std::map<std::string, lab::Process*> agents;
  for (const char* n : {"gw1", "gw2", "w1"}) {
    const bool gateway = std::string(n).rfind("gw", 0) == 0;
    auto argv = clusterAgentArgv(*env, n, server[n], gateway);
    argv.insert(argv.end(), {"--peer-key", key});
    agents[n] = &lab.spawn(lab.node(n), argv, std::string("agent-") + n + ".log");
  }
  auto logs = [&] {
    std::string all = "controller:\n" + ctl->log();
    for (auto& [n, p] : agents) all += "\n--- agent " + n + "\n" + p->log();
    return all;
  };
  int n = 0;
  auto leavesAs = [&] {
    const std::string tag = "fo" + std::to_string(++n);
    lab.send("pay-w1", "udp", tag, 1, 1, true, 300);
    auto peers = lab.peersOf(tag);
    return peers.empty() ? std::string("(nothing arrived)") : *peers.begin();
  };
  const std::string egress = "203.0.113.60";
  auto egressNode = [&] {
    std::string node;
    env->kubectl("get egressip " + egress + " -o jsonpath='{.status.node}'", &node);
    return node;
  };
  auto apiState = [&] {
    std::string a, b;
    env->kubectl("get egressips,egresspools,nodes --show-labels", &a);
    env->kubectl("-n nsegress-system get endpoints,leases -o yaml", &b);
    return a + "\n" + b;
  };
  ASSERT_TRUE(lab::eventually([&] { return leavesAs() == egress && !egressNode().empty(); },
                              std::chrono::seconds(60)))
      << "last: " << leavesAs() << "\n"
      << logs() << "\n"
      << apiState();
  const std::string owner = egressNode(), standby = owner == "gw1" ? "gw2" : "gw1";
  // Every gateway found the leader's lease server in its Endpoints.
  ASSERT_TRUE(lab::eventually(
      [&] {
        return agents["gw1"]->log().find("lease server 10.255.0.1:4795") != std::string::npos &&
               agents["gw2"]->log().find("lease server 10.255.0.1:4795") != std::string::npos;
      },
      std::chrono::seconds(20)))
      << logs();
  // The standby holds the owner's promise: give the book its quiet period
  // and the first heartbeats before the loss.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(leavesAs(), egress);

  // 4 s of probes (a new flow every 10 ms); the owner's node is lost after
  // 1 s: its agent killed, its links cut (to the API server too).
  std::thread prober([&] { lab.send("pay-w1", "udp", "probe", 400, 10, true, 100); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  agents[owner]->signal(SIGKILL);
  for (const char* dev : {"up0", "eth0", "kapi0"})
    lab.exec(lab.node(owner), std::string("ip link set ") + dev + " down");
  prober.join();
  std::vector<bool> got(400, false);
  std::set<std::string> sources;
  for (const auto& l : lab.serverLines()) {
    std::istringstream in(l);
    std::string proto, peer, t;
    int seq = -1;
    in >> proto >> peer >> t >> seq;
    if (t != "probe" || seq < 0 || seq >= 400) continue;
    got[static_cast<size_t>(seq)] = true;
    sources.insert(peer.substr(0, peer.rfind(':')));
  }
  int64_t gap = 0, run = 0, arrived = 0;
  for (bool g : got) {
    run = g ? 0 : run + 1;
    gap = std::max(gap, run * 10);
    arrived += g;
  }
  std::cout << "cluster-mode failover: probe gap " << gap << " ms, " << arrived << "/400 arrived, "
            << owner << " -> " << standby << "\n";
  EXPECT_EQ(sources, std::set<std::string>{egress}) << "only ever the namespace's address";
  EXPECT_GT(arrived, 200);
  EXPECT_LT(gap, 1500) << logs();  // generous; bench/ has the precise figures

  // The store of record: the ownership Lease (written before the grant).
  std::string holder, epoch;
  env->kubectl(
      "-n nsegress-system get lease nsegress-egress-203-0-113-60 -o "
      "jsonpath='{.spec.holderIdentity}'",
      &holder);
  env->kubectl(
      "-n nsegress-system get lease nsegress-egress-203-0-113-60 -o "
      "jsonpath='{.spec.leaseTransitions}'",
      &epoch);
  EXPECT_EQ(holder, standby);
  EXPECT_EQ(epoch, "2");
  // The ledger follows: the EgressIP, `kubectl get egressips`, an Event.
  EXPECT_TRUE(lab::eventually([&] { return egressNode() == standby; }, std::chrono::seconds(20)))
      << logs();
  env->kubectl("get egressips", &out);
  std::cout << out;
  EXPECT_NE(out.find(standby), std::string::npos) << out;
  EXPECT_TRUE(lab::eventually(
      [&] {
        env->kubectl("-n fopay get events.events.k8s.io -o jsonpath='{.items[*].note}'", &out);
        return out.find("failed over from gateway " + owner + " to " + standby) !=
               std::string::npos;
      },
      std::chrono::seconds(20)))
      << out;
  EXPECT_EQ(leavesAs(), egress);

  // A new leader term reads the Leases back: the controller restarted keeps
  // the moved owner (epoch 2) and nothing moves again.
  ctl->signal(SIGTERM);
  EXPECT_EQ(ctl->wait(), 0);
  ctl = failoverController("fo2", "ctl-1", key, "/controller-failover-2.log");
  EXPECT_TRUE(lab::eventually(
      [&] { return ctl->log().find("failover: lease book on") != std::string::npos; },
      std::chrono::seconds(30)))
      << ctl->log();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(egressNode(), standby);
  EXPECT_EQ(leavesAs(), egress);
  EXPECT_EQ(ctl->log().find("taken over by"), std::string::npos) << ctl->log();

  // The lost node comes back and stands by; then the new owner is drained
  // by its Node label (cluster mode's `nsegressctl drain`): a planned
  // hand-over back, recorded in the Lease (epoch 3) and in an Event.
  for (const char* dev : {"up0", "eth0", "kapi0"})
    lab.exec(lab.node(owner), std::string("ip link set ") + dev + " up");
  // (A device set down loses its routes: the lab's, as its CNI and the
  // link to the API server had set them, again.)
  // (One command per exec: each runs inside the node's namespace.)
  std::vector<std::string> routes = {
      "ip route replace 10.255.0.1/32 dev kapi0",
      "ip route replace default via " + std::string(lab::Lab::kOutsideIp)};
  for (const char* other : lab::Lab::kNodes)
    if (other != owner) {
      const std::string j = std::to_string(lab::Lab::nodeIndex(other));
      routes.push_back("ip route replace 10.244." + j + ".0/24 via 192.0.2.1" + j);
    }
  for (const auto& r : routes) lab.exec(lab.node(owner), r);
  {
    auto argv = clusterAgentArgv(*env, owner, server[owner], true);
    argv.insert(argv.end(), {"--peer-key", key});
    agents[owner] = &lab.spawn(lab.node(owner), argv, "agent-" + owner + "-back.log");
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(env->kubectl("label node " + standby + " nsegress.io/drain=true", &out), 0) << out;
  EXPECT_TRUE(lab::eventually([&] { return egressNode() == owner; }, std::chrono::seconds(20)))
      << logs();
  env->kubectl(
      "-n nsegress-system get lease nsegress-egress-203-0-113-60 -o "
      "jsonpath='{.spec.holderIdentity} {.spec.leaseTransitions}'",
      &out);
  EXPECT_EQ(out, owner + " 3");
  EXPECT_TRUE(lab::eventually(
      [&] {
        env->kubectl("-n fopay get events.events.k8s.io -o jsonpath='{.items[*].note}'", &out);
        return out.find("handed over (drain) from gateway " + standby + " to " + owner) !=
               std::string::npos;
      },
      std::chrono::seconds(20)))
      << out;
  EXPECT_TRUE(lab::eventually([&] { return leavesAs() == egress; }, std::chrono::seconds(5)))
      << logs();
  env->kubectl("label node " + standby + " nsegress.io/drain-", &out);
  ctl->signal(SIGTERM);
  ctl->wait();
}

TEST_F(KubeApi, UninstallKeepsTheLedgerAndTheFinalizersCanBeRemoved) {
  applyManifests();
  std::string out;
  ASSERT_EQ(env->kubectl("create namespace leftover", &out), 0) << out;
  ASSERT_EQ(env->kubectl("patch namespace leftover --type=merge -p "
                         "'{\"metadata\":{\"finalizers\":[\"example.com/keep\","
                         "\"nsegress.io/release\"]}}'",
                         &out),
            0)
      << out;
  auto eip = client();
  auto r = eip.request("POST", "/apis/nsegress.io/v1alpha1/egressips",
                       R"({"apiVersion":"nsegress.io/v1alpha1","kind":"EgressIP",
                           "metadata":{"name":"192.0.2.99"},"spec":{"ip":"192.0.2.99","pool":"p"}})");
  ASSERT_TRUE(r && (r->status == 201 || r->status == 409)) << (r ? r->body : r.error().message);
  ASSERT_EQ(env->kubectl("delete -k " NSEGRESS_SOURCE_DIR "/manifests --wait=false", &out), 0)
      << out;
  EXPECT_EQ(env->kubectl("get crd egressips.nsegress.io", &out), 0) << "the CRDs stay";
  EXPECT_EQ(env->kubectl("get egressip 192.0.2.99", &out), 0) << "the ledger stays: " << out;
  // The documented way out for namespaces that keep the release finalizer.
  const std::string kubectl =
      "kubectl --server https://127.0.0.1:6443 --token admin-token "
      "--certificate-authority " +
      env->dir() + "/ca.crt";
  EXPECT_EQ(lab::run("ip netns exec " + env->netns() + " env KUBECTL='" + kubectl + "' " +
                         NSEGRESS_SOURCE_DIR "/deploy/remove-release-finalizers.sh",
                     &out),
            0)
      << out;
  EXPECT_NE(out.find("leftover"), std::string::npos) << out;
  env->kubectl("get ns leftover -o jsonpath='{.metadata.finalizers}'", &out);
  EXPECT_EQ(out, R"(["example.com/keep"])") << "only nsegress's finalizer is removed";
}

}  // namespace
}  // namespace nsegress::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new nsegress::testing::KubeEnvironment);
  return RUN_ALL_TESTS();
}
