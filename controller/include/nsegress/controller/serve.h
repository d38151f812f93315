// How a controller process (standalone or cluster mode) serves its API,
// feeds and web page: the plain listener, the TLS listener and the metrics
// listener (each explicit, each optional), their limits, and the
// credentials file, on an I/O thread of their own so a reconcile never
// delays a feed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "nsegress/common/file.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/metrics.h"
#include "nsegress/http/auth.h"
#include "nsegress/http/server.h"

namespace nsegress::controller {

struct ServeOptions {
  std::string listen;          // plain HTTP: API, feeds (and metrics unless metrics_listen)
  std::string tls_listen;      // HTTPS: the same routes
  std::string metrics_listen;  // /metrics and /healthz only
  http::TlsFiles tls;          // for tls_listen
  std::string auth_file;       // credentials (http/auth.h); empty: none
  size_t max_connections = 4096;
  size_t max_per_peer = 64;
  size_t max_requests_per_connection = 100;
  // Why the options cannot work (e.g. TLS files without a TLS listener),
  // or empty.
  std::string check() const;
};

// The credentials file, re-read when it changes (checked at most once a
// second). A change that does not parse keeps the last good credentials
// and is logged and counted; a file that vanishes keeps them too (a
// Secret's update is a symlink swap). Never read at start-up as empty.
class CredentialsFile {
 public:
  static Result<std::unique_ptr<CredentialsFile>> open(std::string path);
  std::shared_ptr<const http::Credentials> current();
  uint64_t reloadFailures() const;

 private:
  explicit CredentialsFile(std::string p) : path_(std::move(p)) {}
  Result<std::shared_ptr<const http::Credentials>> read(FileStamp* stamp) const;
  const std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const http::Credentials> creds_;
  FileStamp stamp_;
  std::chrono::steady_clock::time_point last_check_{};
  uint64_t failures_ = 0;
};

// Parses a credentials file's text (YAML or JSON).
Result<http::Credentials> parseCredentials(const std::string& text);

class Serving {
 public:
  // Opens every listener and the credentials; an error names what failed.
  // `ctx` and `metrics` must outlive the result.
  static Result<std::unique_ptr<Serving>> start(const ServeOptions& o, const ApiContext& ctx,
                                                ControllerMetrics& metrics);
  // The plain-HTTP API's port (0: none), the TLS one's (0: none).
  uint16_t apiPort() const;
  uint16_t tlsPort() const;
  ~Serving();

 private:
  Serving() = default;
  std::unique_ptr<CredentialsFile> creds_;
  std::shared_ptr<http::TlsContext> tls_;
  std::shared_ptr<http::ServerStats> stats_;
  Router router_, metrics_router_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<HttpServer>> servers_;
  std::thread thread_;
};

}  // namespace nsegress::controller
