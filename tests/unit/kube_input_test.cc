// Bad input from the Kubernetes API: handled without harm (no API server
// needed for these; the `kube` tests cover the real one).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "fake_clock.h"
#include "fake_kube_api.h"
#include "nsegress/common/decode.h"
#include "nsegress/controller/cluster/write_back.h"
#include "nsegress/kube/client.h"
#include "nsegress/kube/informer.h"

namespace nsegress::kube {
namespace {

using nlohmann::json;

TEST(KubeInput, UnknownFieldsOutsideAPoolsSpecAreIgnored) {
  // metadata and status belong to the API server and other writers: what we
  // do not know there is ignored. A pool's spec is ours: a field we do not
  // know is a typo (see Pools.AMisspeltField...), and refused.
  json pool = json::parse(R"({"apiVersion":"nsegress.io/v1alpha1","kind":"EgressPool",
    "metadata":{"name":"p","uid":"x","managedFields":[{"a":1}],"futureField":{"b":2}},
    "spec":{"addresses":["203.0.113.0/30"]},"status":{"whatever":[1,2,3]}})");
  auto p = decodePool(pool);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p->invalid);
  pool["spec"]["someFutureKnob"] = true;
  p = decodePool(pool);
  ASSERT_TRUE(p) << "refused alone: still a pool, marked invalid";
  ASSERT_TRUE(p->invalid);
  EXPECT_EQ(*p->invalid,
            "spec.someFutureKnob: unknown field (known: addresses, exclude, namespaceSelector, "
            "nodeSelector, quarantine, acknowledgeRemoval, onboarding, portBlockSize)");
  json ns = json::parse(
      R"({"metadata":{"name":"a","annotations":{"nsegress.io/pool":"p"},"ownerReferences":[],
    "finalizers":["nsegress.io/release"],"resourceVersion":"42"},
    "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active","conditions":[{"x":1}]}})");
  auto n = decodeNamespace(ns);
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_TRUE(n->requestsEgress());
  EXPECT_EQ(n->finalizers, std::vector<std::string>{"nsegress.io/release"});
  EXPECT_EQ(n->resource_version, "42");
  EXPECT_FALSE(n->deleting);
}

TEST(KubeInput, MissingFieldsAreHandledAndWrongTypesRefused) {
  // A pod without status (pending), a node without conditions, a namespace without annotations.
  auto pod = decodePod(json::parse(R"({"metadata":{"name":"p","namespace":"a"}})"));
  ASSERT_TRUE(pod) << pod.error().message;
  EXPECT_EQ(pod->ns, "a");
  EXPECT_TRUE(pod->ips.empty());
  auto dflt = decodePod(json::parse(R"({"metadata":{"name":"q"}})"));
  ASSERT_TRUE(dflt);
  EXPECT_EQ(dflt->ns, "default");
  // Wrong types are not trusted: a numeric IP refuses the pod with the field named.
  auto odd = decodePod(json::parse(
      R"({"metadata":{"name":"q"},"status":{"podIPs":[{"ip":7},{"ip":"10.0.0.1"}],"phase":3}})"));
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().message, "status.podIPs[0].ip: must be a string");
  // A host-network pod reports the node's address: never its own.
  auto host = decodePod(json::parse(
      R"({"metadata":{"name":"h"},"spec":{"hostNetwork":true},"status":{"podIP":"192.0.2.1"}})"));
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->ips.empty());
  auto node = decodeNode(json::parse(R"({"metadata":{"name":"n"}})"));
  ASSERT_TRUE(node) << node.error().message;
  EXPECT_TRUE(node->ready);
  auto ns = decodeNamespace(json::parse(R"({"metadata":{"name":"a"}})"));
  ASSERT_TRUE(ns);
  EXPECT_TRUE(ns->annotations.empty());
  // An object without a name is refused with a reason, not a crash.
  auto bad = decodeNamespace(json::parse(R"({"metadata":{}})"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "metadata.name: missing");
  // A pool with no spec at all is kept, marked invalid.
  auto pool = decodePool(json::parse(R"({"metadata":{"name":"p"}})"));
  ASSERT_TRUE(pool);
  EXPECT_EQ(pool->invalid, "spec: missing");
  // An EgressIP with an unknown state is refused, not read as Free.
  auto eip = decodeEgressIP(json::parse(
      R"({"metadata":{"name":"x"},"spec":{"ip":"203.0.113.1"},"status":{"state":"Borrowed"}})"));
  ASSERT_FALSE(eip);
  EXPECT_NE(eip.error().message.find("status.state"), std::string::npos);
}

// A loopback server that answers every request with `response`, or with
// nothing at all (silent) if it is empty.
class FakeApiServer {
 public:
  explicit FakeApiServer(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int on = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t l = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &l);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        ++accepted_;
        char buf[4096];
        (void)!read(c, buf, sizeof buf);
        if (!response_.empty()) (void)!write(c, response_.data(), response_.size());
        if (!response_.empty())
          close(c);
        else
          held_.push_back(c);  // silent: keep the connection open, say nothing
      }
    });
  }
  ~FakeApiServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    for (int c : held_) close(c);
  }
  KubeConfig config() const {
    KubeConfig c;
    c.host = "127.0.0.1";
    c.port = std::to_string(port_);
    c.tls = false;
    return c;
  }
  int accepted() const { return accepted_; }

 private:
  std::string response_;
  int fd_;
  uint16_t port_;
  std::atomic<int> accepted_{0};
  std::vector<int> held_;
  std::thread thread_;
};

TEST(KubeInput, OversizedResponsesAreRefused) {
  const std::string big(200000, 'x');
  FakeApiServer s("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(big.size()) + "\r\n\r\n" + big);
  Client c(s.config(), ClientOptions{100, 100, std::chrono::seconds(5), /*max_body=*/100000});
  auto r = c.request("GET", "/api/v1/pods");
  ASSERT_FALSE(r) << "a response over the limit is an error, not unbounded memory; got status "
                  << r->status << " body " << r->body.size();
  Client roomy(s.config(), ClientOptions{100, 100, std::chrono::seconds(5), 1000000});
  EXPECT_TRUE(roomy.request("GET", "/api/v1/pods"));
}

TEST(KubeInput, SilentServerTimesOutInsteadOfHanging) {
  FakeApiServer s("");
  Client c(s.config(), ClientOptions{100, 100, std::chrono::seconds(1)});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.request("GET", "/api/v1/pods");
  EXPECT_FALSE(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(Informer, AFailingServerIsRetriedWithAJitteredExponentialBackoffNotABusyLoop) {
  testing::FakeKubeApi api;
  api.on_request = [](const testing::FakeKubeApi::Call&) -> Result<Response> {
    return Response{500, "{}"};
  };
  testing::FakeClock clock;
  int changes = 0;
  InformerOptions o;
  o.seed = 7;
  Informer<Pod> inf(
      api, clock, "/api/v1/pods", decodePod, [&] { ++changes; }, o);
  std::vector<int64_t> delays;
  for (int i = 0; i < 10; ++i) delays.push_back(inf.step().count());
  // Nominal 100 ms doubling to 10 s, each 50-150 % of nominal.
  int64_t nominal = 100;
  for (auto d : delays) {
    EXPECT_GE(d, nominal / 2);
    EXPECT_LE(d, nominal * 3 / 2);
    nominal = std::min<int64_t>(nominal * 2, 10'000);
  }
  EXPECT_EQ(api.calls().size(), 10u) << "one request per step";
  EXPECT_FALSE(inf.synced());
  EXPECT_EQ(changes, 0);
  EXPECT_EQ(inf.stats().errors, 10u);
}

TEST(Informer, ListsInPagesWatchesFromTheListsVersionAndRelistsOn410) {
  testing::FakeKubeApi api;
  api.on_request = [](const testing::FakeKubeApi::Call& c) -> Result<Response> {
    if (c.path.find("continue=") == std::string::npos)
      return Response{200, R"({"metadata":{"resourceVersion":"10","continue":"c1"},"items":[
        {"metadata":{"name":"a","namespace":"pay"},"status":{"podIP":"10.0.0.1"}}]})"};
    return Response{200, R"({"metadata":{"resourceVersion":"10"},"items":[
        {"metadata":{"name":"b","namespace":"pay"},"status":{"podIP":"bogus"}}]})"};
  };
  testing::FakeClock clock;
  int changes = 0;
  Informer<Pod> inf(api, clock, "/api/v1/pods", decodePod, [&] { ++changes; });
  api.scriptWatch({{R"({"type":"ADDED","object":{"metadata":{"name":"c","namespace":"pay",
      "resourceVersion":"11"},"status":{"podIP":"10.0.0.3"}}})",
                    R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12"}}})",
                    R"(not json)", R"({"type":"ERROR","object":{"code":410}})"}});
  EXPECT_EQ(inf.step().count(), 0) << "the 410 asks for a relist at once";
  EXPECT_TRUE(inf.synced());
  auto calls = api.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].path, "/api/v1/pods?limit=500");
  EXPECT_EQ(calls[1].path, "/api/v1/pods?limit=500&continue=c1");
  EXPECT_NE(calls[2].path.find("resourceVersion=10"), std::string::npos) << calls[2].path;
  std::set<std::string> keys;
  inf.read([&](const auto& m) {
    for (const auto& [k, p] : m) keys.insert(k);
  });
  EXPECT_EQ(keys, (std::set<std::string>{"pay/a", "pay/c"}));
  EXPECT_EQ(inf.malformed().count("pay/b"), 1u) << "a pod that does not decode is reported";
  EXPECT_EQ(inf.stats().relists_410, 1u);
  EXPECT_EQ(inf.stats().bookmarks, 1u);
  EXPECT_EQ(changes, 2) << "the list and one event";
  // The relist replaces the cache (c is gone: it was not in the new list).
  api.clearCalls();
  inf.step();
  EXPECT_EQ(api.calls().front().path, "/api/v1/pods?limit=500");
  keys.clear();
  inf.read([&](const auto& m) {
    for (const auto& [k, p] : m) keys.insert(k);
  });
  EXPECT_EQ(keys, (std::set<std::string>{"pay/a"}));
}

}  // namespace
}  // namespace nsegress::kube

namespace nsegress::controller::cluster {
namespace {

TEST(KubeJsonPatch, ReleaseFinalizerRemovalAppliesOnlyToTheListAsRead) {
  const std::vector<std::string> fins = {"a", kReleaseFinalizer, "b", kReleaseFinalizer};
  const auto patch = nlohmann::json::parse(releaseFinalizerPatch(fins));
  nlohmann::json ns{{"metadata", {{"name", "pay"}, {"finalizers", fins}}}};
  EXPECT_EQ(ns.patch(patch)["metadata"]["finalizers"], (std::vector<std::string>{"a", "b"}));
  // Someone removed "a" meanwhile: the indices moved, the tests fail, nothing
  // else is removed (the API server answers 422 and the next pass retries).
  nlohmann::json moved{{"metadata", {{"finalizers", {kReleaseFinalizer, "b", kReleaseFinalizer}}}}};
  EXPECT_ANY_THROW(moved.patch(patch));
  EXPECT_EQ(releaseFinalizerPatch({"a", "b"}), "");
}

}  // namespace
}  // namespace nsegress::controller::cluster
