// Bad input from the Kubernetes API: handled without harm (no API server
// needed for these; the `kube` tests cover the real one).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "nsegress/controller/manifests.h"
#include "nsegress/kube/client.h"
#include "nsegress/kube/cluster_mode.h"
#include "nsegress/kube/informer.h"

namespace nsegress::kube {
namespace {

using nlohmann::json;

TEST(KubeInput, UnknownFieldsAreIgnored) {
  json pool = json::parse(R"({"apiVersion":"nsegress.io/v1alpha1","kind":"EgressPool",
    "metadata":{"name":"p","uid":"x","managedFields":[{"a":1}],"futureField":{"b":2}},
    "spec":{"addresses":["203.0.113.0/30"],"someFutureKnob":true},"status":{"whatever":[1,2,3]}})");
  auto w = controller::parseManifests(trimEgressPool(pool).dump(), "api");
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_FALSE(w->pools.at("p").invalid);
  json ns = json::parse(
      R"({"metadata":{"name":"a","annotations":{"nsegress.io/pool":"p"},"ownerReferences":[]},
    "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active","conditions":[{"x":1}]}})");
  auto t = trimNamespace(ns);
  EXPECT_FALSE(t["metadata"].contains("ownerReferences")) << "caches keep only what is used";
  EXPECT_TRUE(controller::parseManifests(t.dump(), "api"));
}

TEST(KubeInput, MissingFieldsAreHandled) {
  // A pod without status (pending), a node without conditions, a namespace without annotations.
  auto pod = cachedPod(trimPod(json::parse(R"({"metadata":{"name":"p","namespace":"a"}})")));
  ASSERT_TRUE(pod);
  EXPECT_EQ(pod->ns, "a");
  EXPECT_TRUE(pod->ips.empty());
  EXPECT_EQ(pod->phase, "");
  // Wrong types are dropped, not trusted: a numeric IP, a string hostNetwork.
  auto odd = cachedPod(trimPod(json::parse(
      R"({"metadata":{"name":"q"},"spec":{"hostNetwork":"yes"},"status":{"podIPs":[{"ip":7},{"ip":"10.0.0.1"}],"phase":3}})")));
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->ns, "default");
  EXPECT_FALSE(odd->host_network);
  EXPECT_EQ(odd->ips, (std::vector<std::string>{"", "10.0.0.1"}));
  EXPECT_FALSE(cachedPod(json::object())) << "not a cached pod";
  auto node = controller::parseManifests(
      trimNode(json::parse(R"({"metadata":{"name":"n"}})")).dump(), "api");
  ASSERT_TRUE(node) << node.error().message;
  EXPECT_TRUE(node->nodes.at("n").ready);
  auto ns = controller::parseManifests(
      trimNamespace(json::parse(R"({"metadata":{"name":"a"}})")).dump(), "api");
  ASSERT_TRUE(ns);
  EXPECT_TRUE(ns->namespaces.at("a").annotations.empty());
  // An object without a name is refused with a reason, not a crash.
  auto bad =
      controller::parseManifests(trimNamespace(json::parse(R"({"metadata":{}})")).dump(), "api");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("metadata.name"), std::string::npos);
  // A pool with no spec at all is kept, marked invalid.
  auto pool = controller::parseManifests(
      trimEgressPool(json::parse(R"({"metadata":{"name":"p"}})")).dump(), "api");
  ASSERT_TRUE(pool);
  EXPECT_TRUE(pool->pools.at("p").invalid);
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

TEST(KubeInput, UnreachableOrFailingServerIsRetriedWithBackoffNotABusyLoop) {
  // An API server that answers every request with 500.
  FakeApiServer s("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}");
  int changes = 0;
  Informer inf(s.config(), "/api/v1/pods", trimPod, [&] { ++changes; });
  inf.start();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  inf.stop();
  // Backoff 100 ms doubling (with jitter) to 10 s: a handful of attempts in
  // 3 s, not thousands.
  EXPECT_GE(s.accepted(), 2);
  EXPECT_LE(s.accepted(), 8) << "busy loop";
  EXPECT_FALSE(inf.synced());
  EXPECT_EQ(changes, 0);
  EXPECT_GE(inf.stats().errors, 2u);
}

}  // namespace
}  // namespace nsegress::kube

namespace nsegress::kube {
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
}  // namespace nsegress::kube
