// The HTTP seam's trust parts: credentials (parsing, each scheme, roles,
// pools), access per route, the TLS listener (handshake, client
// certificates, reload), and the connection limits, on real loopback
// sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "nsegress/controller/api.h"
#include "nsegress/controller/serve.h"
#include "nsegress/http/auth.h"
#include "nsegress/http/server.h"
#include "test_certs.h"

namespace nsegress::http {
namespace {

namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
using tcp = boost::asio::ip::tcp;
using testing::basicAuth;
using testing::TestCa;
using testing::writeText;

const char* kCreds = R"(
principals:
  - name: panorama
    password: "correct horse battery"
    role: read
  - name: payments-fw
    password: "another long secret"
    role: read
    pools: [payments]
  - name: ops
    token: "a-write-token-0123456789"
    role: write
  - name: fw1.example.net
    certCN: fw1.example.net
    role: read
)";

std::shared_ptr<const Credentials> creds() {
  auto c = controller::parseCredentials(kCreds);
  EXPECT_TRUE(c) << (c ? "" : c.error().message);
  return std::make_shared<const Credentials>(std::move(*c));
}

HttpRequest req(const std::string& method, const std::string& target,
                std::vector<std::pair<std::string, std::string>> headers = {},
                const std::string& peer = "192.0.2.10") {
  HttpRequest r = HttpRequest::make(method, target);
  for (auto& [k, v] : headers) r.headers.add(k, v);
  r.peer = peer;
  return r;
}

TEST(Credentials, MalformedFilesAreRefusedWithoutEchoingSecrets) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "principals"},
      {"principals: 3", "principals"},
      {"principals: []\nextra: 1", "principals"},
      {"principals:\n  - name: a\n    password: shortpw\n    role: read", "12 to 1024"},
      {"principals:\n  - name: a\n    password: 'long enough secret'\n    role: admin", "role"},
      {"principals:\n  - name: a\n    password: 'long enough secret'\n    token: "
       "'long enough token'\n    role: read",
       "exactly one"},
      {"principals:\n  - name: a\n    role: read", "exactly one"},
      {"principals:\n  - name: 'a b'\n    password: 'long enough secret'\n    role: read", "name"},
      {"principals:\n  - name: 'a:b'\n    password: 'long enough secret'\n    role: read", "name"},
      {"principals:\n  - name: a\n    password: 'long enough secret'\n    role: read\n  - name: "
       "a\n    password: 'long enough secret2'\n    role: read",
       "twice"},
      {"principals:\n  - name: a\n    token: 'same token 123'\n    role: read\n  - name: "
       "b\n    token: 'same token 123'\n    role: write",
       "another principal"},
      {"principals:\n  - name: a\n    passwordSha256: abc\n    role: read", "64 hex"},
      {"principals:\n  - name: a\n    password: 'long enough secret'\n    role: write\n    "
       "pools: [p]",
       "write role"},
      {"principals:\n  - name: a\n    password: 'long enough secret'\n    role: read\n    "
       "colour: red",
       "unknown key"},
      {"principals:\n  - [a, b]", "map"},
      {"principals:\n  - name: a\n    token: \"long enough\\nsecret\"\n    role: read",
       "control characters"},
      {",", ""},
      {"principals:\n  - name: a\n    password: 'long enough secret'\n    role: read\n  - name: "
       "a\n",
       "twice"},
  };
  for (const auto& [text, want] : bad) {
    auto c = controller::parseCredentials(text);
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.error().message.find(want), std::string::npos)
        << text << " -> " << c.error().message;
    EXPECT_EQ(c.error().message.find("long enough secret"), std::string::npos)
        << "a secret in a message: " << c.error().message;
  }
  // A digest instead of the secret.
  const std::string digest =
      "a04b1d4c5c0bd2ba0c6d2e6e16b4ed6e0e1dbbcc1fb1e8e4b2b4c1f3e5d8a9b1";  // not a real one
  auto c = controller::parseCredentials("principals:\n  - name: a\n    tokenSha256: " + digest +
                                        "\n    role: read\n");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->size(), 1u);
}

TEST(Credentials, EachSchemeNamesItsPrincipalAndNothingElse) {
  auto c = creds();
  auto who = [&](std::vector<std::pair<std::string, std::string>> h, std::string cn = "") {
    auto r = req("GET", "/x", std::move(h));
    r.client_cert_cn = std::move(cn);
    auto p = c->authenticate(r);
    return p ? p->name : std::string("-");
  };
  EXPECT_EQ(who({{"Authorization", basicAuth("panorama", "correct horse battery")}}), "panorama");
  EXPECT_EQ(who({{"authorization", basicAuth("panorama", "correct horse batterY")}}), "-");
  EXPECT_EQ(who({{"Authorization", basicAuth("ops", "a-write-token-0123456789")}}), "-")
      << "a token is not a password";
  EXPECT_EQ(who({{"Authorization", basicAuth("nobody", "correct horse battery")}}), "-");
  // Base64 with padding (31 bytes), and the padding tampered with.
  EXPECT_EQ(who({{"Authorization", basicAuth("payments-fw", "another long secret")}}),
            "payments-fw");
  EXPECT_EQ(who({{"Authorization", "Basic cGF5bWVudHMtZnc6YW5vdGhlciBsb25nIHNlY3JldA=="}}),
            "payments-fw");
  EXPECT_EQ(who({{"Authorization", "Basic cGF5bWVudHMtZnc6YW5v=GhlciBsb25nIHNlY3JldA=="}}), "-");
  EXPECT_EQ(who({{"Authorization", "Bearer a-write-token-0123456789"}}), "ops");
  EXPECT_EQ(who({{"Authorization", "bearer a-write-token-0123456789"}}), "ops");
  EXPECT_EQ(who({{"Authorization", "Bearer correct horse battery"}}), "-");
  EXPECT_EQ(who({{"Authorization", "Basic !!!notbase64"}}), "-");
  EXPECT_EQ(who({{"Authorization", "Basic cGFub3JhbWE="}}), "-") << "no colon";
  EXPECT_EQ(who({{"Authorization", "Digest whatever"}}), "-");
  EXPECT_EQ(who({{"Authorization", std::string(5000, 'B')}}), "-");
  EXPECT_EQ(who({}, "fw1.example.net"), "fw1.example.net");
  EXPECT_EQ(who({}, "fw2.example.net"), "-");
  EXPECT_EQ(who({{"Authorization", "Bearer wrong"}}, "fw1.example.net"), "-")
      << "wrong credentials are not overridden by a certificate";
  EXPECT_EQ(who({}), "-");
  // Two Authorization headers, the good one first or last: neither counts.
  EXPECT_EQ(
      who({{"Authorization", "Bearer a-write-token-0123456789"}, {"Authorization", "Bearer nope"}}),
      "-");
  EXPECT_EQ(
      who({{"Authorization", "Bearer nope"}, {"authorization", "Bearer a-write-token-0123456789"}}),
      "-");
}

class Access : public ::testing::Test {
 protected:
  void SetUp() override {
    router.get(
        "/feeds/edl/*",
        [](const HttpRequest& r) {
          if (r.principal && !r.principal->allowsPool(r.rest)) return jsonError(403, "pool");
          return HttpResponse{200, "text/plain", {}, "192.0.2.1\n"};
        },
        Router::Cost::kFast, Router::Access::kFeed);
    router.get("/api/v1/addresses", [](const HttpRequest&) { return HttpResponse{}; });
    router.get(
        "/healthz", [](const HttpRequest&) { return HttpResponse{}; }, Router::Cost::kFast,
        Router::Access::kOpen);
    router.add("POST", "/api/v1/ack", [](const HttpRequest&) { return HttpResponse{}; });
  }
  int status(HttpRequest r) { return router.dispatch(std::move(r)).status; }
  Router router;
};

TEST_F(Access, WithoutCredentialsChangesComeOnlyFromThisHost) {
  EXPECT_EQ(status(req("GET", "/feeds/edl/p")), 200);
  EXPECT_EQ(status(req("GET", "/api/v1/addresses")), 200);
  EXPECT_EQ(status(req("POST", "/api/v1/ack")), 403);
  EXPECT_EQ(status(req("POST", "/api/v1/ack", {{"Host", "localhost:8080"}}, "127.0.0.1")), 200);
  EXPECT_EQ(status(req("POST", "/api/v1/ack", {{"Host", "evil.example"}}, "127.0.0.1")), 403)
      << "DNS rebinding";
  EXPECT_EQ(status(req("POST", "/api/v1/ack",
                       {{"Host", "localhost"}, {"Origin", "http://evil.example"}}, "127.0.0.1")),
            403)
      << "a cross-site form";
}

TEST_F(Access, WithCredentialsEveryRouteButHealthNeedsThem) {
  router.setCredentials([c = creds()] { return c; });
  auto unauth = router.dispatch(req("GET", "/feeds/edl/p"));
  EXPECT_EQ(unauth.status, 401);
  EXPECT_EQ(unauth.headers.get("WWW-Authenticate").value_or(""),
            "Basic realm=\"nsegress\", charset=\"UTF-8\"");
  EXPECT_EQ(unauth.body.find("192.0.2"), std::string::npos);
  EXPECT_EQ(status(req("GET", "/healthz")), 200);
  const auto reader =
      std::pair{std::string("Authorization"), basicAuth("panorama", "correct horse battery")};
  const auto writer =
      std::pair{std::string("Authorization"), std::string("Bearer a-write-token-0123456789")};
  const auto limited =
      std::pair{std::string("Authorization"), basicAuth("payments-fw", "another long secret")};
  EXPECT_EQ(status(req("GET", "/feeds/edl/p", {reader})), 200);
  EXPECT_EQ(status(req("GET", "/api/v1/addresses", {reader})), 200);
  EXPECT_EQ(status(req("POST", "/api/v1/ack", {reader})), 403) << "read role";
  EXPECT_EQ(status(req("POST", "/api/v1/ack", {writer})), 200) << "from anywhere";
  EXPECT_EQ(status(req("POST", "/api/v1/ack", {writer, {"Origin", "http://evil.example"}})), 403);
  EXPECT_EQ(status(req("GET", "/feeds/edl/payments", {limited})), 200);
  EXPECT_EQ(status(req("GET", "/feeds/edl/other", {limited})), 403);
  EXPECT_EQ(status(req("GET", "/api/v1/addresses", {limited})), 403)
      << "the read API shows every pool";
  // Loopback is no exception once credentials are configured.
  EXPECT_EQ(status(req("POST", "/api/v1/ack", {{"Host", "localhost"}}, "127.0.0.1")), 401);
}

// --- sockets ---------------------------------------------------------------

struct Files {
  Files() {
    dir = fs::temp_directory_path() /
          ("nsegress-tls-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(dir);
  }
  ~Files() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  fs::path dir;
  static inline int counter = 0;
};

class Served : public ::testing::Test {
 protected:
  void SetUp() override {
    router.get(
        "/healthz",
        [](const HttpRequest&) {
          return HttpResponse{200, "text/plain", {}, "ok\n"};
        },
        Router::Cost::kFast, Router::Access::kOpen);
    router.get("/whoami", [](const HttpRequest& r) {
      return HttpResponse{
          200,
          "text/plain",
          {},
          (r.principal ? r.principal->name : std::string("-")) + " tls=" + std::to_string(r.tls)};
    });
    auto server_pem = ca.issue("localhost");
    writeText(files.path("cert.pem"), server_pem.cert);
    writeText(files.path("key.pem"), server_pem.key);
    writeText(files.path("ca.pem"), ca.certPem());
  }
  void start(ServerOptions o) {
    auto s = Server::listen(io, "127.0.0.1", 0, router, std::move(o));
    ASSERT_TRUE(s) << s.error().message;
    server = std::move(*s);
    thread = std::thread([this] { io.run(); });
  }
  void TearDown() override {
    server.reset();
    io.stop();
    if (thread.joinable()) thread.join();
  }
  std::shared_ptr<TlsContext> tls(bool client_ca = false) {
    auto t = TlsContext::load(
        {files.path("cert.pem"), files.path("key.pem"), client_ca ? files.path("ca.pem") : ""});
    EXPECT_TRUE(t) << (t ? "" : t.error().message);
    return t ? *t : nullptr;
  }
  // One HTTPS GET; the response body, or "error: ..." .
  std::string tlsGet(const std::string& target, const testing::Pem* client = nullptr,
                     const std::string& auth = "", long* serial = nullptr, int max_version = 0) {
    boost::asio::io_context cio;
    ssl::context cctx(ssl::context::tls_client);
    cctx.add_certificate_authority(boost::asio::buffer(ca.certPem()));
    cctx.set_verify_mode(ssl::verify_peer);
    if (max_version) SSL_CTX_set_max_proto_version(cctx.native_handle(), max_version);
    if (client) {
      cctx.use_certificate_chain(boost::asio::buffer(client->cert));
      cctx.use_private_key(boost::asio::buffer(client->key), ssl::context::pem);
    }
    ssl::stream<tcp::socket> s(cio, cctx);
    beast::error_code ec;
    s.next_layer().connect({boost::asio::ip::make_address("127.0.0.1"), server->port()}, ec);
    if (ec) return "error: connect " + ec.message();
    SSL_set_tlsext_host_name(s.native_handle(), "localhost");
    s.handshake(ssl::stream_base::client, ec);
    if (ec) return "error: handshake " + ec.message();
    if (serial) {
      X509* c = SSL_get1_peer_certificate(s.native_handle());
      *serial = ASN1_INTEGER_get(X509_get_serialNumber(c));
      X509_free(c);
    }
    beast::http::request<beast::http::empty_body> rq{beast::http::verb::get, target, 11};
    rq.set(beast::http::field::host, "localhost");
    if (!auth.empty()) rq.set(beast::http::field::authorization, auth);
    beast::http::write(s, rq, ec);
    if (ec) return "error: write " + ec.message();
    beast::flat_buffer buf;
    beast::http::response<beast::http::string_body> rs;
    beast::http::read(s, buf, rs, ec);
    if (ec) return "error: read " + ec.message();
    return std::to_string(rs.result_int()) + " " + rs.body();
  }

  TestCa ca;
  Files files;
  Router router;
  boost::asio::io_context io;
  std::unique_ptr<Server> server;
  std::thread thread;
};

int connectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until EOF (or the 5 s receive timeout): what the server sent.
std::string readAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::string plainGet(uint16_t port, const std::string& raw) {
  int fd = connectLoopback(port);
  if (fd < 0) return "connect failed";
  (void)!write(fd, raw.data(), raw.size());
  std::string out = readAll(fd);
  close(fd);
  return out;
}

TEST_F(Served, TlsServesTheRoutesAndRefusesPlainTextAndOldVersions) {
  ServerOptions o;
  o.tls = tls();
  start(o);
  EXPECT_EQ(tlsGet("/healthz"), "200 ok\n");
  EXPECT_EQ(tlsGet("/whoami"), "200 - tls=1");
  // Plain HTTP to the TLS port: no HTTP answer.
  EXPECT_EQ(plainGet(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").find("200"),
            std::string::npos);
  EXPECT_NE(tlsGet("/healthz", nullptr, "", nullptr, TLS1_1_VERSION).find("error: handshake"),
            std::string::npos);
  // The server counts a failed handshake once its side has seen it.
  for (int i = 0; i < 200 && server->stats().tls_failures.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(server->stats().tls_failures.load(), 2u);
  EXPECT_EQ(tlsGet("/healthz"), "200 ok\n") << "still serving";
}

TEST_F(Served, AClientCertificateNamesItsPrincipal) {
  ServerOptions o;
  o.tls = tls(/*client_ca=*/true);
  start(o);
  router.setCredentials([c = creds()] { return c; });
  const auto fw1 = ca.issue("fw1.example.net");
  EXPECT_EQ(tlsGet("/whoami", &fw1), "200 fw1.example.net tls=1");
  EXPECT_EQ(tlsGet("/whoami").substr(0, 3), "401") << "no certificate, no credentials";
  EXPECT_EQ(tlsGet("/whoami", nullptr, basicAuth("panorama", "correct horse battery")),
            "200 panorama tls=1")
      << "basic still works beside mTLS";
  // A certificate for the right CN from another CA is not verified.
  TestCa other("another CA");
  const auto forged = other.issue("fw1.example.net");
  const std::string r = tlsGet("/whoami", &forged);
  EXPECT_TRUE(r.starts_with("error") || r.starts_with("401")) << r;
}

TEST_F(Served, ACertificateRenewedOnDiskIsServedWithoutARestart) {
  ServerOptions o;
  o.tls = tls();
  start(o);
  long serial = 0;
  ASSERT_EQ(tlsGet("/healthz", nullptr, "", &serial), "200 ok\n");
  EXPECT_EQ(serial, 2);
  // A half-written key: refused, the old certificate stays.
  writeText(files.path("key.pem"), "-----BEGIN PRIVATE KEY-----\ngarbage\n");
  o.tls->checkNow();
  ASSERT_EQ(tlsGet("/healthz", nullptr, "", &serial), "200 ok\n");
  EXPECT_EQ(serial, 2);
  EXPECT_EQ(o.tls->reloadFailures(), 1u);
  // The renewed pair.
  auto renewed = ca.issue("localhost", 7);
  writeText(files.path("cert.pem"), renewed.cert);
  writeText(files.path("key.pem"), renewed.key);
  o.tls->checkNow();
  ASSERT_EQ(tlsGet("/healthz", nullptr, "", &serial), "200 ok\n");
  EXPECT_EQ(serial, 7);
  EXPECT_EQ(o.tls->reloads(), 1u);
}

TEST_F(Served, KeepAliveServesSeveralRequestsUpToTheLimit) {
  ServerOptions o;
  o.max_requests_per_connection = 3;
  start(o);
  const std::string one = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  // Five pipelined requests: three answers, the third with Connection: close.
  const std::string out = plainGet(server->port(), one + one + one + one + one);
  size_t answers = 0;
  for (size_t p = out.find("HTTP/1.1 200"); p != std::string::npos;
       p = out.find("HTTP/1.1 200", p + 1))
    ++answers;
  EXPECT_EQ(answers, 3u) << out;
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
}

TEST_F(Served, OnePeerCannotTakeEverySlot) {
  ServerOptions o;
  o.max_per_peer = 4;
  start(o);
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(connectLoopback(server->port()));
  // Let the server accept them.
  for (int i = 0; i < 100 && server->stats().connections.load() < 4; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(server->stats().connections.load(), 4u);
  // The fifth from the same address is closed at once, unanswered.
  EXPECT_EQ(plainGet(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), "");
  EXPECT_EQ(server->stats().refused_peer.load(), 1u);
  for (int fd : idle) close(fd);
  for (int i = 0; i < 100 && server->stats().connections.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_NE(plainGet(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").find("200"),
            std::string::npos);
}

TEST_F(Served, SlowClientsAreEvictedForAPollerWhenFull) {
  ServerOptions o;
  o.max_connections = 4;
  o.max_per_peer = 100;
  start(o);
  // Four slowloris connections: a header line, never finished.
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) {
    int fd = connectLoopback(server->port());
    (void)!write(fd, "GET /healthz HTTP/1.1\r\nX-Slow: ", 31);
    slow.push_back(fd);
  }
  for (int i = 0; i < 100 && server->stats().connections.load() < 4; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(server->stats().connections.load(), 4u);
  // Within their first second they are not evicted: a new one is refused.
  EXPECT_EQ(plainGet(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), "");
  EXPECT_EQ(server->stats().refused_limit.load(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // Now the poller gets in: the oldest slow one makes room.
  EXPECT_NE(plainGet(server->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").find("200 OK"),
            std::string::npos);
  EXPECT_EQ(server->stats().evicted.load(), 1u);
  for (int fd : slow) close(fd);
}

TEST_F(Served, ASlowlorisIsCutAtTheTimeout) {
  ServerOptions o;
  o.timeout = std::chrono::milliseconds(300);
  start(o);
  int fd = connectLoopback(server->port());
  (void)!write(fd, "GET /healthz HTTP/1.1\r\n", 23);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = readAll(fd);  // EOF when the server gives up
  close(fd);
  EXPECT_EQ(out.find("200"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(4))
      << "cut by the server, not by the test's own 5 s receive timeout";
}

TEST(CredentialsFile, ABadChangeKeepsTheLastGoodCredentials) {
  Files files;
  const std::string path = files.path("auth.yaml");
  writeText(path, kCreds);
  auto f = controller::CredentialsFile::open(path);
  ASSERT_TRUE(f) << f.error().message;
  auto first = (*f)->current();
  EXPECT_EQ(first->size(), 4u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  writeText(path, "principals: [");  // half-written
  EXPECT_EQ((*f)->current(), first);
  EXPECT_EQ((*f)->reloadFailures(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  fs::remove(path);  // a Secret's symlink swap in progress
  EXPECT_EQ((*f)->current(), first);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  writeText(path, "principals:\n  - name: solo\n    token: 'the only token 42'\n    role: write\n");
  EXPECT_EQ((*f)->current()->size(), 1u);
  // At start-up a bad or empty file is an error, never "no credentials".
  writeText(path, "principals: []\n");
  EXPECT_FALSE(controller::CredentialsFile::open(path));
  EXPECT_FALSE(controller::CredentialsFile::open(files.path("missing.yaml")));
}

}  // namespace
}  // namespace nsegress::http
