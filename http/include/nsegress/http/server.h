// The HTTP/1.1 server on Boost.Beast, plain or TLS (OpenSSL), each listener
// explicit. Routes come from a Router (http.h): fast handlers run on the I/O
// thread, slow ones on a worker pool, so a scan of the audit log never
// delays a feed.
//
// Bounded everywhere, so no client starves another:
//  - header and body sizes (an oversized request is 400, the connection
//    closed);
//  - time: a TLS handshake, a request and a response each within `timeout`
//    (a slowloris holds its connection that long at most);
//  - connections: at most max_per_peer from one address, at most
//    max_connections in all; when full, the oldest connection that has been
//    waiting for request bytes for over a second is closed to make room
//    (a flood of slow clients never locks out a poller);
//  - keep-alive: up to max_requests_per_connection requests on one
//    connection, each waiting at most `timeout` for its first byte.
#pragma once

#include <prometheus/collectable.h>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>

#include "nsegress/common/result.h"
#include "nsegress/http/http.h"
#include "nsegress/http/tls.h"

namespace nsegress::http {

// Counters of one process's listeners (nsegress_http_* metrics).
struct ServerStats {
  std::atomic<uint64_t> connections{0};    // open now
  std::atomic<uint64_t> accepted{0};       // connections accepted
  std::atomic<uint64_t> refused_limit{0};  // refused: max_connections, nothing to evict
  std::atomic<uint64_t> refused_peer{0};   // refused: max_per_peer
  std::atomic<uint64_t> evicted{0};        // slow connections closed to make room
  std::atomic<uint64_t> tls_failures{0};   // TLS handshakes that failed
  std::atomic<uint64_t> requests{0};       // requests answered
  std::atomic<uint64_t> unauthorized{0};   // requests answered 401
  std::atomic<uint64_t> accept_errors{0};  // accept() failures (each backed off)
};

// nsegress_http_* from `stats` (and the TLS contexts' reload counters).
std::shared_ptr<prometheus::Collectable> serverMetrics(
    const ServerStats& stats, std::vector<std::shared_ptr<TlsContext>> tls = {});

struct ServerOptions {
  size_t header_limit = 8 * 1024;
  size_t body_limit = 64 * 1024;
  // To finish a TLS handshake, to read a request (also the wait for the next
  // one on a kept-alive connection), and to write a response.
  std::chrono::milliseconds timeout{10'000};
  size_t max_connections = 4096;
  size_t max_per_peer = 64;
  size_t max_requests_per_connection = 100;
  size_t slow_workers = 2;  // threads for Router::Cost::kSlow handlers
  // After a failed accept() (e.g. out of file descriptors), wait this long
  // before the next one: never a busy loop.
  std::chrono::milliseconds accept_backoff{100};
  // Set: this listener speaks TLS only.
  std::shared_ptr<TlsContext> tls;
  std::string server_name = "nsegress";
  // Shared counters; null: the server keeps its own.
  std::shared_ptr<ServerStats> stats;
};

class Server {
 public:
  // Listens on host:port (port 0: any free port). `router` must outlive the
  // server.
  static Result<std::unique_ptr<Server>> listen(boost::asio::io_context& io,
                                                const std::string& host, uint16_t port,
                                                const Router& router, ServerOptions o = {});
  // The same on "host:port" ("[v6]:port" too); a malformed address is an
  // error naming it.
  static Result<std::unique_ptr<Server>> listen(boost::asio::io_context& io,
                                                const std::string& host_port, const Router& router,
                                                ServerOptions o = {});
  struct Listener {
    std::string address;  // host:port; empty: none (a null entry in the result)
    const Router* router;
    ServerOptions options;
  };
  // A process's listeners, in order (e.g. the API, its TLS twin, metrics).
  static Result<std::vector<std::unique_ptr<Server>>> listenAll(
      boost::asio::io_context& io, const std::vector<Listener>& listeners);
  uint16_t port() const;
  const ServerStats& stats() const;
  // accept() failures so far (each followed by accept_backoff).
  uint64_t acceptErrors() const;
  ~Server();
  struct Impl;  // shared with the connections (server.cc)

 private:
  explicit Server(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace nsegress::http
