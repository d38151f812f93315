// The HTTP server on a real loopback socket: good requests, malformed ones.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "nsegress/controller/api.h"
#include "nsegress/controller/http.h"

namespace nsegress::controller {
namespace {

std::string roundTrip(uint16_t port, const std::string& raw) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "connect failed";
  (void)!write(fd, raw.data(), raw.size());
  shutdown(fd, SHUT_WR);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router = apiRouter(ctx);
    // Headers both ways.
    router.get("/test/echo", [](const HttpRequest& r) {
      HttpResponse resp{200, "text/plain", {}, r.headers.get("x-probe").value_or("none")};
      resp.headers.add("ETag", "\"v1\"");
      return resp;
    });
    // A slow handler that waits until the test releases it.
    router.get(
        "/test/slow",
        [this](const HttpRequest&) {
          std::unique_lock l(mu);
          slow_started = true;
          cv.notify_all();
          cv.wait(l, [&] { return released; });
          return HttpResponse{200, "text/plain", {}, "slow done"};
        },
        Router::Cost::kSlow);
    auto s = HttpServer::listen(io, "127.0.0.1", 0, router);
    ASSERT_TRUE(s) << s.error().message;
    server = std::move(*s);
    thread = std::thread([this] { io.run(); });
  }
  void TearDown() override {
    release();
    server.reset();
    io.stop();
    if (thread.joinable()) thread.join();
  }
  void release() {
    std::lock_guard l(mu);
    released = true;
    cv.notify_all();
  }
  ApiContext ctx = ApiContext::fixed(std::make_shared<View>());
  Router router;
  boost::asio::io_context io;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool slow_started = false, released = false;
};

TEST_F(HttpServerTest, HeadersGoBothWaysCaseInsensitively) {
  auto out = roundTrip(server->port(), "GET /test/echo HTTP/1.1\r\nHost: x\r\nX-PROBE: 42\r\n\r\n");
  EXPECT_NE(out.find("\r\n\r\n42"), std::string::npos) << out;
  EXPECT_NE(out.find("ETag: \"v1\""), std::string::npos) << out;
  auto head = roundTrip(server->port(), "HEAD /test/echo HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(head.find("200 OK"), std::string::npos);
  EXPECT_EQ(head.find("none"), std::string::npos) << "HEAD has no body";
}

TEST_F(HttpServerTest, ASlowHandlerNeverHoldsUpTheFeeds) {
  std::string slow;
  std::thread t([&] { slow = roundTrip(server->port(), "GET /test/slow HTTP/1.1\r\n\r\n"); });
  {
    std::unique_lock l(mu);
    ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] { return slow_started; }));
  }
  // The slow handler is blocked on a worker: the I/O thread still answers.
  EXPECT_NE(roundTrip(server->port(), "GET /healthz HTTP/1.1\r\n\r\n").find("200 OK"),
            std::string::npos);
  release();
  t.join();
  EXPECT_NE(slow.find("slow done"), std::string::npos) << slow;
}

TEST_F(HttpServerTest, ServesAndRejectsMalformedRequests) {
  const uint16_t p = server->port();
  EXPECT_NE(roundTrip(p, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").find("200 OK"),
            std::string::npos);
  EXPECT_NE(roundTrip(p, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").find("404"), std::string::npos);
  EXPECT_NE(roundTrip(p, "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n").find("405"),
            std::string::npos);
  EXPECT_NE(roundTrip(p, "this is not http\r\n\r\n").find("400"), std::string::npos);
  EXPECT_NE(roundTrip(p, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\nabc")
                .find("400"),
            std::string::npos)
      << "bodies are bounded";
  EXPECT_NE(roundTrip(p, "GET /healthz HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n")
                .find("400"),
            std::string::npos)
      << "headers are bounded";
  // The server is still serving after all that.
  EXPECT_NE(roundTrip(p, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").find("ok"), std::string::npos);
}

TEST(HttpServerListen, BadAddressIsAClearError) {
  boost::asio::io_context io;
  Router r;
  auto s = HttpServer::listen(io, "not-an-address", 0, r);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("not-an-address"), std::string::npos);
}

}  // namespace
}  // namespace nsegress::controller
