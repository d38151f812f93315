// The HTTP server on a real loopback socket: good requests, malformed ones.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <thread>

#include "nsegress/controller/http_server.h"

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
    auto v = std::make_shared<View>();
    auto s =
        HttpServer::listen(io, "127.0.0.1", 0, [v](const std::string& m, const std::string& t) {
          return handleRequest(ApiContext{v, nullptr, nullptr}, m, t);
        });
    ASSERT_TRUE(s) << s.error().message;
    server = std::move(*s);
    thread = std::thread([this] { io.run(); });
  }
  void TearDown() override {
    io.stop();
    if (thread.joinable()) thread.join();
  }
  boost::asio::io_context io;
  std::unique_ptr<HttpServer> server;
  std::thread thread;
};

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
  auto s = HttpServer::listen(io, "not-an-address", 0, nullptr);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("not-an-address"), std::string::npos);
}

}  // namespace
}  // namespace nsegress::controller
