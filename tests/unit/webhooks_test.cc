// Webhooks against a real receiver on loopback: URL validation, signed
// delivery in order, retries with backoff, dead letters, a full queue, and
// the controller's hook.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <mutex>
#include <thread>

#include "nsegress/controller/controller.h"
#include "nsegress/controller/manifests.h"
#include "nsegress/controller/webhooks.h"
#include "nsegress/http/server.h"

namespace nsegress::controller {
namespace {

TEST(WebhookUrl, StrictParsing) {
  for (const char* bad : {"", "not a url", "ftp://h/", "http://", "http:///x", "http://u:p@h/",
                          "http://h:0/", "http://h:99999/", "http://h:8a/", "http://h/#frag",
                          "http://h /x", "http://h\x01/", "http://[::1/x", "http://h_x/"}) {
    auto u = http::Url::parse(bad);
    EXPECT_FALSE(u) << bad;
  }
  // An error never echoes a password, nor a line break into the log.
  auto pw = http::Url::parse("http://admin:hunter2secret@h/x\r\nforged");
  ASSERT_FALSE(pw);
  EXPECT_EQ(pw.error().message.find("hunter2secret"), std::string::npos) << pw.error().message;
  EXPECT_EQ(pw.error().message.find('\n'), std::string::npos);
  auto u = http::Url::parse("HTTPS://[::1]:8443/hook?token=secret");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(u->target, "/hook?token=secret");
  EXPECT_EQ(u->redacted(), "https://[::1]:8443/hook") << "no query (a secret) in logs";
  auto d = http::Url::parse("http://fw.example.net?x=1");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->port, 80);
  EXPECT_EQ(d->target, "/?x=1");
}

// A receiver that answers with the statuses it is given, in turn (then 200).
struct Receiver {
  Receiver() {
    router.add(
        "POST", "/hook",
        [this](const http::HttpRequest& r) {
          std::lock_guard l(mu);
          bodies.push_back(r.body);
          timestamps.push_back(r.headers.get("x-nsegress-timestamp").value_or(""));
          signatures.push_back(r.headers.get("x-nsegress-signature").value_or(""));
          int status = 200;
          if (!statuses.empty()) {
            status = statuses.front();
            statuses.erase(statuses.begin());
          }
          return http::HttpResponse{status, "text/plain", {}, ""};
        },
        http::Router::Cost::kFast, http::Router::Access::kOpen);
    auto s = http::Server::listen(io, "127.0.0.1", 0, router);
    EXPECT_TRUE(s);
    server = std::move(*s);
    thread = std::thread([this] { io.run(); });
  }
  ~Receiver() {
    server.reset();
    io.stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server->port()) + "/hook"; }
  size_t count() {
    std::lock_guard l(mu);
    return bodies.size();
  }
  http::Router router;
  boost::asio::io_context io;
  std::unique_ptr<http::Server> server;
  std::thread thread;
  std::mutex mu;
  std::vector<std::string> bodies, timestamps, signatures;
  std::vector<int> statuses;
};

template <typename F>
bool eventually(F f) {
  for (int i = 0; i < 500; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

AuditEvent ev(const std::string& kind, const std::string& ip) {
  return AuditEvent{1'800'000'000, kind, "pay", ip, "dmz", "gw-a", kind + " " + ip};
}

WebhookOptions opts(const std::string& url) {
  WebhookOptions o;
  o.urls = {url};
  o.secret = "a shared webhook key";
  o.first_backoff = std::chrono::milliseconds(10);
  o.max_backoff = std::chrono::milliseconds(40);
  o.timeout = std::chrono::milliseconds(2000);
  return o;
}

TEST(Webhooks, SignedBatchesArriveInOrder) {
  Receiver rx;
  auto w = Webhooks::start(opts(rx.url()));
  ASSERT_TRUE(w) << w.error().message;
  (*w)->notify({ev("Assigned", "203.0.113.10"), ev("Assigned", "203.0.113.11")});
  (*w)->notify({ev("Released", "203.0.113.10")});
  ASSERT_TRUE(eventually([&] { return rx.count() == 2; }));
  EXPECT_NE(rx.bodies[0].find("203.0.113.11"), std::string::npos);
  EXPECT_NE(rx.bodies[1].find("Released"), std::string::npos);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(rx.signatures[i],
              webhookSignature("a shared webhook key", rx.timestamps[i], rx.bodies[i]));
    EXPECT_NE(rx.signatures[i],
              webhookSignature("another key entirely", rx.timestamps[i], rx.bodies[i]));
  }
  EXPECT_TRUE(eventually([&] { return (*w)->stats(0).delivered == 2; }));
}

TEST(Webhooks, FailuresAreRetriedThenDeadLettered) {
  Receiver rx;
  rx.statuses = {500, 503};
  auto o = opts(rx.url());
  o.max_attempts = 3;
  auto w = Webhooks::start(o);
  ASSERT_TRUE(w);
  (*w)->notify({ev("Assigned", "203.0.113.10")});
  ASSERT_TRUE(eventually([&] { return (*w)->stats(0).delivered == 1; }));
  EXPECT_EQ((*w)->stats(0).retries, 2u);
  EXPECT_EQ(rx.count(), 3u);
  // Three failures in a row: a dead letter, and the next batch still goes.
  rx.statuses = {500, 500, 500};
  (*w)->notify({ev("Released", "203.0.113.10")});
  (*w)->notify({ev("Assigned", "203.0.113.12")});
  ASSERT_TRUE(eventually([&] { return (*w)->stats(0).delivered == 2; }));
  EXPECT_EQ((*w)->stats(0).dead, 1u);
  EXPECT_NE(rx.bodies.back().find("203.0.113.12"), std::string::npos);
}

TEST(Webhooks, AnUnreachableReceiverNeverGrowsTheQueuePastItsBound) {
  // A port nobody listens on (the receiver's, after it is gone).
  std::string url;
  {
    Receiver gone;
    url = gone.url();
  }
  auto o = opts(url);
  o.max_queue = 3;
  o.max_attempts = 100;
  o.first_backoff = std::chrono::milliseconds(1000);
  auto w = Webhooks::start(o);
  ASSERT_TRUE(w);
  for (int i = 0; i < 10; ++i) (*w)->notify({ev("Assigned", "203.0.113." + std::to_string(i))});
  const auto s = (*w)->stats(0);
  EXPECT_LE(s.queued, 3u);
  EXPECT_EQ(s.dead, 7u) << "every batch dropped is counted";
}

TEST(Webhooks, ABadUrlIsAStartError) {
  WebhookOptions o;
  o.urls = {"http://ok.example/", "not a url"};
  auto w = Webhooks::start(o);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message.find("not a url"), std::string::npos);
}

TEST(Webhooks, TheControllerNotifiesEachCommittedBatch) {
  MemoryStore store;
  Controller ctl(
      store, [] { return Seconds{1'800'000'000}; }, "", ReleaseGuard::offForTest());
  ASSERT_TRUE(ctl.start());
  std::vector<AuditEvent> seen;
  ctl.setOnCommit(
      [&](const std::vector<AuditEvent>& e) { seen.insert(seen.end(), e.begin(), e.end()); });
  auto w = parseManifests(R"(
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: dmz}
spec: {addresses: ["203.0.113.10/32"]}
---
apiVersion: v1
kind: Namespace
metadata: {name: pay, annotations: {nsegress.io/pool: dmz}}
)",
                          "w.yaml");
  ASSERT_TRUE(w) << w.error().message;
  ASSERT_TRUE(ctl.reconcile(*w));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, "Assigned");
  ASSERT_TRUE(ctl.reconcile(*w));
  EXPECT_EQ(seen.size(), 1u) << "nothing changed, nothing sent";
}

}  // namespace
}  // namespace nsegress::controller
