// Cluster mode's logic on a fake API and a fake clock, deterministic: Lease
// election (take-over only after the lease went unrenewed, never two
// leaders, release for a fast hand-over, optimistic concurrency) and the
// write-backs. The real API server runs the same code in tests/kube.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "fake_clock.h"
#include "fake_kube_api.h"
#include "nsegress/common/decode.h"
#include "nsegress/controller/cluster/lease_records.h"
#include "nsegress/controller/cluster/write_back.h"
#include "nsegress/kube/leader.h"
#include "nsegress/kube/request_queue.h"

namespace nsegress {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::FakeClock;
using testing::FakeKubeApi;

// One Lease object with resourceVersion semantics (create-if-absent,
// update only at the version read), as the API server keeps it.
class FakeLeaseServer {
 public:
  Result<kube::Response> operator()(const FakeKubeApi::Call& c) {
    std::lock_guard l(mu_);
    if (c.verb == "GET") {
      if (!lease_) return kube::Response{404, "{}"};
      return kube::Response{200, lease_->dump()};
    }
    auto body = json::parse(c.body);
    if (c.verb == "POST") {
      if (lease_) return kube::Response{409, "{}"};
      body["metadata"]["resourceVersion"] = std::to_string(++rv_);
      lease_ = body;
      return kube::Response{201, lease_->dump()};
    }
    if (c.verb == "PUT") {
      if (!lease_ || body["metadata"].value("resourceVersion", "") !=
                         (*lease_)["metadata"].value("resourceVersion", ""))
        return kube::Response{409, "{}"};
      body["metadata"]["resourceVersion"] = std::to_string(++rv_);
      lease_ = body;
      return kube::Response{200, lease_->dump()};
    }
    return kube::Response{405, "{}"};
  }
  std::string holder() const {
    std::lock_guard l(mu_);
    return lease_ ? (*lease_)["spec"].value("holderIdentity", "") : "";
  }

 private:
  mutable std::mutex mu_;
  std::optional<json> lease_;
  int rv_ = 0;
};

struct Replicas {
  FakeLeaseServer server;
  FakeKubeApi api_a, api_b;
  FakeClock clock;
  kube::LeaderElector a{api_a, clock, opts("a")}, b{api_b, clock, opts("b")};
  Replicas() {
    api_a.on_request = [this](const auto& c) { return server(c); };
    api_b.on_request = [this](const auto& c) { return server(c); };
  }
  static kube::LeaderOptions opts(std::string id) {
    return kube::LeaderOptions{"nsegress-system",   "nsegress-controller", std::move(id),
                               milliseconds(15000), milliseconds(10000),   milliseconds(2000)};
  }
};

TEST(LeaderElection, OneAcquiresTheOtherWaitsWhileItIsRenewed) {
  Replicas r;
  r.a.tick();
  EXPECT_TRUE(r.a.isLeader());
  EXPECT_EQ(r.server.holder(), "a");
  for (int i = 0; i < 50; ++i) {  // 100 s of renewals every 2 s
    r.b.tick();
    EXPECT_FALSE(r.b.isLeader()) << "at " << i * 2 << " s";
    r.clock.advance(milliseconds(2000));
    r.a.tick();
    ASSERT_TRUE(r.a.isLeader());
  }
  EXPECT_EQ(r.b.holder(), "a");
}

TEST(LeaderElection, AFrozenLeaderStopsActingBeforeAnotherTakesOver) {
  Replicas r;
  r.a.tick();
  r.b.tick();  // b observes a's record now
  // a freezes (no more ticks). Step through time: never two leaders.
  int a_stopped_at = -1, b_started_at = -1;
  for (int ms = 0; ms <= 30000; ms += 500) {
    if (ms % 2000 == 0) r.b.tick();
    const bool la = r.a.isLeader(), lb = r.b.isLeader();
    ASSERT_FALSE(la && lb) << "two leaders at " << ms << " ms";
    if (!la && a_stopped_at < 0) a_stopped_at = ms;
    if (lb && b_started_at < 0) b_started_at = ms;
    r.clock.advance(milliseconds(500));
  }
  EXPECT_EQ(a_stopped_at, 10000) << "a stops at its renew deadline, by its own clock";
  EXPECT_EQ(b_started_at, 16000) << "b takes over at its first tick after the lease duration";
  EXPECT_EQ(r.server.holder(), "b");
}

TEST(LeaderElection, ReleaseHandsOverAtTheNextTick) {
  Replicas r;
  r.a.tick();
  r.b.tick();
  r.a.release();
  EXPECT_FALSE(r.a.isLeader());
  EXPECT_EQ(r.server.holder(), "");
  r.b.tick();
  EXPECT_TRUE(r.b.isLeader()) << "an empty holder is free at once";
}

TEST(LeaderElection, TwoReplicasUpdatingFromTheSameVersionOneWins) {
  Replicas r;
  r.a.tick();
  r.a.release();
  // Both read the released lease, then both write: the second write carries
  // a stale resourceVersion and gets 409.
  std::optional<FakeKubeApi::Call> held;
  r.api_b.on_request = [&](const FakeKubeApi::Call& c) -> Result<kube::Response> {
    if (c.verb == "PUT" && !held) {
      held = c;  // b's update waits until a has written
      r.a.tick();
      return r.server(c);
    }
    return r.server(c);
  };
  r.b.tick();
  EXPECT_TRUE(r.a.isLeader());
  EXPECT_FALSE(r.b.isLeader());
  EXPECT_EQ(r.server.holder(), "a");
}

TEST(LeaderElection, TheLoopReportsWonLostAndLapsedLeadership) {
  Replicas r;
  Stopper stop;
  std::vector<bool> changes;
  std::mutex mu;
  // The API becomes unreachable after the first acquisition: leadership
  // lapses at the renew deadline without any tick succeeding.
  std::atomic<bool> reachable{true};
  r.api_a.on_request = [&](const FakeKubeApi::Call& c) -> Result<kube::Response> {
    if (!reachable) return makeError(ECONNREFUSED, "unreachable");
    return r.server(c);
  };
  std::thread t([&] {
    kube::runElection(r.a, r.clock, stop, [&](bool leader) {
      std::lock_guard l(mu);
      changes.push_back(leader);
    });
  });
  auto seen = [&](size_t n) {
    for (int i = 0; i < 5000; ++i) {
      {
        std::lock_guard l(mu);
        if (changes.size() >= n) return true;
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
    return false;
  };
  ASSERT_TRUE(seen(1));
  reachable = false;
  for (int i = 0; i < 12; ++i) {
    r.clock.advance(milliseconds(1000));
    std::this_thread::sleep_for(milliseconds(10));  // let the loop see each second
  }
  ASSERT_TRUE(seen(2));
  stop.request();
  t.join();
  EXPECT_EQ(changes, (std::vector<bool>{true, false}));
}

// ---- write-back -------------------------------------------------------------

controller::View viewWith(const std::string& ns, const char* ip) {
  controller::View v;
  controller::NamespaceStatus st;
  st.ns = ns;
  st.phase = controller::Phase::kAssigned;
  st.ip = *IpAddress::parse(ip);
  v.statuses[ns] = st;
  AddressRecord r;
  r.ip = *st.ip;
  r.state = AddressState::kAssigned;
  r.ns = ns;
  v.ledger[r.ip] = r;
  return v;
}

Namespace annotated(std::string name, std::string rv) {
  Namespace n;
  n.name = std::move(name);
  n.annotations[kPoolAnnotation] = "dmz";
  n.resource_version = std::move(rv);
  return n;
}

TEST(WriteBack, AnnotatesAndAddsTheFinalizerConditionallyOnTheVersionRead) {
  FakeKubeApi api;
  api.on_request = [](const auto&) { return kube::Response{200, "{}"}; };
  auto st = controller::cluster::writeBack(api, viewWith("pay", "203.0.113.10"),
                                           {{"pay", annotated("pay", "7")}});
  ASSERT_EQ(api.calls().size(), 1u);
  const auto c = api.calls()[0];
  EXPECT_EQ(c.verb, "PATCH");
  EXPECT_EQ(c.path, "/api/v1/namespaces/pay");
  EXPECT_EQ(c.content_type, "application/merge-patch+json");
  auto body = json::parse(c.body);
  EXPECT_EQ(body["metadata"]["resourceVersion"], "7");
  EXPECT_EQ(body["metadata"]["annotations"][kAssignedAnnotation], "203.0.113.10");
  EXPECT_EQ(body["metadata"]["finalizers"], json::array({"nsegress.io/release"}));
  EXPECT_EQ(st.annotations, 1u);
  EXPECT_EQ(st.finalizers_added, 1u);
  // Written already: nothing to do.
  Namespace done = annotated("pay", "8");
  done.annotations[kAssignedAnnotation] = "203.0.113.10";
  done.finalizers = {"nsegress.io/release"};
  api.clearCalls();
  controller::cluster::writeBack(api, viewWith("pay", "203.0.113.10"), {{"pay", done}});
  EXPECT_TRUE(api.calls().empty());
}

TEST(WriteBack, TheFinalizerIsRemovedOnlyOnceTheLedgerNoLongerHoldsTheAddress) {
  FakeKubeApi api;
  api.on_request = [](const auto&) { return kube::Response{200, "{}"}; };
  Namespace gone = annotated("pay", "9");
  gone.deleting = true;
  gone.finalizers = {"kubernetes", "nsegress.io/release"};
  controller::cluster::writeBack(api, viewWith("pay", "203.0.113.10"), {{"pay", gone}});
  EXPECT_TRUE(api.calls().empty()) << "still held: the namespace waits";
  controller::View released;
  auto st = controller::cluster::writeBack(api, released, {{"pay", gone}});
  ASSERT_EQ(api.calls().size(), 1u);
  EXPECT_EQ(api.calls()[0].content_type, "application/json-patch+json");
  EXPECT_EQ(api.calls()[0].body, controller::cluster::releaseFinalizerPatch(gone.finalizers));
  EXPECT_EQ(st.finalizers_removed, 1u);
}

TEST(WriteBack, AStaleReadIsLeftToTheNextPassOtherRefusalsAreCounted) {
  FakeKubeApi api;
  int status = 409;
  api.on_request = [&](const auto&) { return kube::Response{status, "{}"}; };
  auto st = controller::cluster::writeBack(api, viewWith("pay", "203.0.113.10"),
                                           {{"pay", annotated("pay", "7")}});
  EXPECT_EQ(st.failures, 0u);
  EXPECT_EQ(st.annotations, 0u);
  status = 403;
  st = controller::cluster::writeBack(api, viewWith("pay", "203.0.113.10"),
                                      {{"pay", annotated("pay", "7")}});
  EXPECT_EQ(st.failures, 1u);
}

}  // namespace
}  // namespace nsegress

namespace nsegress::testing {
namespace {

TEST(RequestQueue, SendsInOrderOffTheCallersThreadAndRefusesWhenFull) {
  FakeKubeApi api;
  std::mutex gate;
  std::unique_lock hold(gate);  // the queue's thread waits here on its first request
  api.on_request = [&](const FakeKubeApi::Call& c) -> Result<kube::Response> {
    std::lock_guard g(gate);
    return kube::Response{c.path == "/fail" ? 500 : 200, ""};
  };
  std::vector<std::string> done;
  std::mutex done_mu;
  {
    kube::RequestQueue q(api, /*max_items=*/3);
    auto item = [&](std::string path) {
      return kube::RequestQueue::Item{"PATCH", path, "{}", "application/json",
                                      [&, path](const Result<kube::Response>& r) {
                                        std::lock_guard l(done_mu);
                                        done.push_back(path + ":" + std::to_string(r->status));
                                      }};
    };
    ASSERT_TRUE(q.push(item("/a")));  // taken by the thread, blocked at the gate
    while (api.calls().empty()) std::this_thread::yield();
    EXPECT_TRUE(q.push(item("/fail")));
    EXPECT_TRUE(q.push(item("/b")));
    EXPECT_TRUE(q.push(item("/c")));
    EXPECT_FALSE(q.push(item("/d"))) << "full: refused at once, the caller never waits";
    EXPECT_EQ(q.refused(), 1u);
    hold.unlock();
    EXPECT_TRUE(q.drain(std::chrono::seconds(10)));
    EXPECT_EQ(q.sent(), 4u);
  }
  EXPECT_EQ(done, (std::vector<std::string>{"/a:200", "/fail:500", "/b:200", "/c:200"}));
}

TEST(WriteBack, TheLeadersEndpointsListItAloneAndItLeavesOnlyItsOwnEntry) {
  FakeKubeApi api;
  nlohmann::json ep = {{"metadata", {{"name", "nsegress-controller"}, {"resourceVersion", "1"}}}};
  int puts = 0;
  api.on_request = [&](const FakeKubeApi::Call& c) -> Result<kube::Response> {
    if (c.verb == "GET") return kube::Response{200, ep.dump()};
    ++puts;
    auto body = nlohmann::json::parse(c.body);
    if (body["metadata"]["resourceVersion"] != ep["metadata"]["resourceVersion"])
      return kube::Response{409, ""};
    ep = body;
    ep["metadata"]["resourceVersion"] =
        std::to_string(std::stoi(ep["metadata"]["resourceVersion"].get<std::string>()) + 1);
    return kube::Response{200, ep.dump()};
  };
  controller::cluster::LeaderEndpoint a{"nsegress-system", "nsegress-controller", "ctl-a",
                                        "10.0.0.1", 8080};
  controller::cluster::LeaderEndpoint b = a;
  b.pod = "ctl-b";
  b.ip = "10.0.0.2";
  ASSERT_TRUE(controller::cluster::publishLeaderEndpoint(api, a, true));
  EXPECT_EQ(ep["subsets"][0]["addresses"][0]["ip"], "10.0.0.1");
  EXPECT_EQ(ep["subsets"][0]["ports"][0]["port"], 8080);
  ASSERT_TRUE(controller::cluster::publishLeaderEndpoint(api, a, true));
  EXPECT_EQ(puts, 1) << "already listed: nothing written";
  // b takes over; a's late "leave" must not remove b.
  ASSERT_TRUE(controller::cluster::publishLeaderEndpoint(api, b, true));
  ASSERT_TRUE(controller::cluster::publishLeaderEndpoint(api, a, false));
  EXPECT_EQ(ep["subsets"][0]["addresses"][0]["ip"], "10.0.0.2");
  ASSERT_TRUE(controller::cluster::publishLeaderEndpoint(api, b, false));
  EXPECT_TRUE(ep["subsets"].empty());
}

}  // namespace
}  // namespace nsegress::testing

// ---- failover in cluster mode: the ownership Leases and the leader's lease server ----

namespace nsegress {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

json egressLease(const std::string& name, const std::string& ip, const json& holder,
                 const json& transitions, const std::string& rv = "7") {
  return json{
      {"apiVersion", "coordination.k8s.io/v1"},
      {"kind", "Lease"},
      {"metadata",
       {{"name", name}, {"resourceVersion", rv}, {"annotations", {{kEgressLeaseAddress, ip}}}}},
      {"spec", {{"holderIdentity", holder}, {"leaseTransitions", transitions}}}};
}

TEST(ClusterFailover, AnOwnershipLeaseDecodesOnlyUnderItsAddressesNameWithAnEpochAndANode) {
  auto good =
      decodeEgressLease(egressLease("nsegress-egress-203-0-113-10", "203.0.113.10", "gw2", 3));
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ(good->ip.str(), "203.0.113.10");
  EXPECT_EQ(good->owner, "gw2");
  EXPECT_EQ(good->epoch, 3u);
  EXPECT_EQ(good->version, "7");
  EXPECT_EQ(egressLeaseName(*IpAddress::parse("fd00::1")), "nsegress-egress-fd00--1");
  const std::vector<std::pair<json, std::string>> bad = {
      {egressLease("nsegress-egress-203-0-113-11", "203.0.113.10", "gw2", 3), "metadata.name"},
      {egressLease("nsegress-egress-203-0-113-10", "203.0.113.300", "gw2", 3),
       "nsegress.io/address"},
      {egressLease("nsegress-egress-203-0-113-10", "203.0.113.10", "GW 2", 3), "holderIdentity"},
      {egressLease("nsegress-egress-203-0-113-10", "203.0.113.10", 7, 3), "holderIdentity"},
      {egressLease("nsegress-egress-203-0-113-10", "203.0.113.10", "gw2", 0), "leaseTransitions"},
      {egressLease("nsegress-egress-203-0-113-10", "203.0.113.10", "gw2", -4), "leaseTransitions"},
      {egressLease("nsegress-egress-203-0-113-10", "203.0.113.10", "gw2", "3"), "leaseTransitions"},
      {json::array(), "metadata"},
  };
  for (const auto& [doc, field] : bad) {
    auto r = decodeEgressLease(doc);
    ASSERT_FALSE(r) << doc.dump();
    EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  }
}

TEST(ClusterFailover, TheLeaseServerIsTheOneLeadersAddressAndItsUdpLeasePort) {
  auto endpoints = [](const json& subsets) {
    json e{{"metadata", {{"name", "nsegress-controller"}}}};
    if (!subsets.is_null()) e["subsets"] = subsets;
    return e;
  };
  const json http = {{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}};
  const json lease = {{"name", "lease"}, {"port", 4795}, {"protocol", "UDP"}};
  auto one = [&](const std::string& ip, const json& ports) {
    return json::array({{{"addresses", {{{"ip", ip}}}}, {"ports", ports}}});
  };
  EXPECT_EQ(*decodeLeaseServer(endpoints(one("10.0.0.5", {http, lease}))), "10.0.0.5:4795");
  EXPECT_EQ(*decodeLeaseServer(endpoints(nullptr)), "");                  // no leader listed
  EXPECT_EQ(*decodeLeaseServer(endpoints(one("10.0.0.5", {http}))), "");  // failover off
  EXPECT_EQ(*decodeLeaseServer(endpoints(one("fd00::5", {http, lease}))), "");
  json tcp_lease = lease;
  tcp_lease["protocol"] = "TCP";
  EXPECT_EQ(*decodeLeaseServer(endpoints(one("10.0.0.5", {tcp_lease}))), "");
  json two = one("10.0.0.5", {http, lease});
  two[0]["addresses"].push_back({{"ip", "10.0.0.6"}});
  EXPECT_EQ(*decodeLeaseServer(endpoints(two)), "");  // a hand-over in progress: none
  EXPECT_FALSE(decodeLeaseServer(endpoints("nope")));
  EXPECT_FALSE(decodeLeaseServer(json{{"subsets", json::array()}}));  // no name
}

// Leases as the API server keeps them: create-if-absent, update only at the
// version read.
class FakeLeases {
 public:
  Result<kube::Response> operator()(const FakeKubeApi::Call& c) {
    std::lock_guard l(mu_);
    if (c.verb == "GET") {
      json list{{"items", json::array()}};
      for (const auto& [n, o] : objects_) list["items"].push_back(o);
      return kube::Response{200, list.dump()};
    }
    auto body = json::parse(c.body);
    const std::string name = body["metadata"]["name"];
    auto it = objects_.find(name);
    if (c.verb == "POST" && it != objects_.end()) return kube::Response{409, "{}"};
    if (c.verb == "PUT" && (it == objects_.end() || it->second["metadata"]["resourceVersion"] !=
                                                        body["metadata"]["resourceVersion"]))
      return kube::Response{409, "{}"};
    body["metadata"]["resourceVersion"] = std::to_string(++rv_);
    objects_[name] = body;
    return kube::Response{c.verb == "POST" ? 201 : 200, body.dump()};
  }
  std::mutex mu_;
  std::map<std::string, json> objects_;
  int rv_ = 100;
};

TEST(ClusterFailover, OwnerChangesAreWrittenConditionallyAndAnotherWriterMakesTheBookStale) {
  FakeLeases server;
  FakeKubeApi api, other;
  api.on_request = [&](const auto& c) { return server(c); };
  other.on_request = [&](const auto& c) { return server(c); };
  const auto a = *IpAddress::parse("203.0.113.10"), b = *IpAddress::parse("203.0.113.11");
  controller::cluster::KubeLeaseRecords mine(api, "nsegress-system"),
      theirs(other, "nsegress-system");
  ASSERT_TRUE(mine.load());
  ASSERT_TRUE(theirs.load());
  // Epoch 1 (never moved) is not written; a move is created, the next one updated.
  std::map<IpAddress, LeaseView> book{{a, {"gw1", 1}}, {b, {"gw2", 2}}};
  ASSERT_TRUE(mine.save(book, {a, b}));
  EXPECT_EQ(server.objects_.size(), 1u);
  book[b] = {"gw1", 3};
  ASSERT_TRUE(mine.save(book, {b}));
  auto back = mine.load();
  ASSERT_TRUE(back);
  ASSERT_EQ(back->count(b), 1u);
  EXPECT_EQ(back->at(b).owner, "gw1");
  EXPECT_EQ(back->at(b).epoch, 3u);
  // A second book that read nothing (or read before the write) loses: ESTALE.
  auto s = theirs.save({{b, {"gw3", 3}}}, {b});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ESTALE);
  EXPECT_EQ(server.objects_["nsegress-egress-203-0-113-11"]["spec"]["holderIdentity"], "gw1");
  // A Lease that does not decode stops the load, naming it.
  server.objects_["nsegress-egress-203-0-113-12"] =
      egressLease("nsegress-egress-203-0-113-12", "203.0.113.99", "gw1", 2);
  auto broken = mine.load();
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("nsegress-egress-203-0-113-12"), std::string::npos)
      << broken.error().message;
  // An API error is an error (retried), not a conflict.
  api.on_request = [](const auto&) { return Result<kube::Response>(kube::Response{500, "boom"}); };
  auto e = mine.save({{a, {"gw2", 2}}}, {a});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().code, ESTALE);
}

}  // namespace
}  // namespace nsegress
