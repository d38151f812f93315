// A small HTTP/1.1 server on Boost.Beast: bounded request size, timeouts,
// one response per connection. Routes come from a Router (http.h): fast
// handlers run on the I/O thread, slow ones on a worker pool, so a scan of
// the audit log never delays a feed. The session is written over a stream
// type, so a TLS stream can be added without touching the handlers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>

#include "nsegress/common/result.h"
#include "nsegress/controller/http.h"

namespace nsegress::controller {

struct HttpServerOptions {
  size_t header_limit = 8 * 1024;
  size_t body_limit = 64 * 1024;
  std::chrono::seconds timeout{10};  // to read a request, and to write a response
  size_t slow_workers = 2;           // threads for Router::Cost::kSlow handlers
  // After a failed accept() (e.g. out of file descriptors), wait this long
  // before the next one: never a busy loop.
  std::chrono::milliseconds accept_backoff{100};
};

class HttpServer {
 public:
  // Listens on host:port (port 0: any free port). `router` must outlive the
  // server.
  static Result<std::unique_ptr<HttpServer>> listen(boost::asio::io_context& io,
                                                    const std::string& host, uint16_t port,
                                                    const Router& router, HttpServerOptions o = {});
  // The same on "host:port" ("[v6]:port" too); a malformed address is an
  // error naming it.
  static Result<std::unique_ptr<HttpServer>> listen(boost::asio::io_context& io,
                                                    const std::string& host_port,
                                                    const Router& router, HttpServerOptions o = {});
  // The API listener and the metrics listener of a process: each non-empty
  // host:port with its router. The result has one entry per listener given
  // (null for an empty address), so [0] is the API's.
  static Result<std::vector<std::unique_ptr<HttpServer>>> listenAll(
      boost::asio::io_context& io,
      const std::vector<std::pair<std::string, const Router*>>& listeners);
  uint16_t port() const;
  // accept() failures so far (each followed by accept_backoff).
  uint64_t acceptErrors() const;
  ~HttpServer();
  struct Impl;  // shared with the connections (http_server.cc)

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace nsegress::controller
