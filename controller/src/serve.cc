#include "nsegress/controller/serve.h"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <nlohmann/json.hpp>

#include "nsegress/controller/manifests.h"

namespace nsegress::controller {

namespace {
constexpr size_t kMaxCredentialsBytes = 1 << 20;

class CredentialsMetrics : public prometheus::Collectable {
 public:
  explicit CredentialsMetrics(const CredentialsFile& f) : f_(f) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily f{"nsegress_http_credentials_reload_failures_total",
                               "Changes of the credentials file that did not parse (the last good "
                               "credentials stay in force)",
                               prometheus::MetricType::Counter,
                               {}};
    prometheus::ClientMetric m;
    m.counter.value = static_cast<double>(f_.reloadFailures());
    f.metric.push_back(m);
    return {f};
  }

 private:
  const CredentialsFile& f_;
};
}  // namespace

std::string ServeOptions::check() const {
  const bool any_tls = !tls.cert.empty() || !tls.key.empty() || !tls.client_ca.empty();
  if (!tls_listen.empty() && (tls.cert.empty() || tls.key.empty()))
    return "--tls-listen needs --tls-cert and --tls-key";
  if (tls_listen.empty() && any_tls)
    return "--tls-cert/--tls-key/--tls-client-ca need --tls-listen";
  if (!tls.client_ca.empty() && auth_file.empty())
    return "--tls-client-ca needs --auth-file: a certificate's CN names a principal there "
           "(without credentials nothing would be restricted)";
  if (max_connections == 0 || max_per_peer == 0 || max_requests_per_connection == 0)
    return "connection limits must be at least 1";
  return "";
}

Result<http::Credentials> parseCredentials(const std::string& text) {
  YamlLimits limits;
  limits.max_documents = 1;
  limits.max_values = 20'000;
  limits.max_depth = 8;
  auto docs = parseYamlDocuments(text, limits);
  if (!docs) return docs.error();
  if (docs->size() != 1 || (*docs)[0].is_null())
    return makeError(EINVAL, "expected one document with principals");
  return http::Credentials::fromTree((*docs)[0]);
}

Result<std::shared_ptr<const http::Credentials>> CredentialsFile::read(FileStamp* stamp) const {
  auto f = readFileBounded(path_, kMaxCredentialsBytes);
  if (!f) return f.error();
  *stamp = f->stamp;
  auto c = parseCredentials(f->text);
  if (!c) return makeError(EINVAL, path_ + ": " + c.error().message);
  return std::make_shared<const http::Credentials>(std::move(*c));
}

Result<std::unique_ptr<CredentialsFile>> CredentialsFile::open(std::string path) {
  std::unique_ptr<CredentialsFile> f(new CredentialsFile(std::move(path)));
  auto c = f->read(&f->stamp_);
  if (!c) return c.error();
  if ((*c)->size() == 0) return makeError(EINVAL, f->path_ + ": no principals");
  f->creds_ = std::move(*c);
  f->last_check_ = std::chrono::steady_clock::now();
  return f;
}

std::shared_ptr<const http::Credentials> CredentialsFile::current() {
  std::lock_guard l(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_check_ < std::chrono::seconds(1)) return creds_;
  last_check_ = now;
  const auto seen = statFile(path_);
  if (!seen) return creds_;  // vanished (mid-swap): keep
  if (*seen == stamp_) return creds_;
  FileStamp stamp;
  auto c = read(&stamp);
  stamp_ = *seen;  // a bad version is reported once, not at every request
  if (!c || (*c)->size() == 0) {
    ++failures_;
    spdlog::error("credentials not reloaded, the last good ones stay: {}",
                  c ? path_ + ": no principals" : c.error().message);
    return creds_;
  }
  creds_ = std::move(*c);
  spdlog::info("credentials reloaded from {} ({} principals)", path_, creds_->size());
  return creds_;
}

uint64_t CredentialsFile::reloadFailures() const {
  std::lock_guard l(mu_);
  return failures_;
}

Result<std::unique_ptr<Serving>> Serving::start(const ServeOptions& o, const ApiContext& ctx,
                                                ControllerMetrics& metrics) {
  if (auto why = o.check(); !why.empty()) return makeError(EINVAL, why);
  std::unique_ptr<Serving> s(new Serving());
  if (!o.auth_file.empty()) {
    auto c = CredentialsFile::open(o.auth_file);
    if (!c) return makeError(EINVAL, "--auth-file " + c.error().message);
    s->creds_ = std::move(*c);
  }
  if (!o.tls_listen.empty()) {
    auto t = http::TlsContext::load(o.tls);
    if (!t) return makeError(EINVAL, "TLS: " + t.error().message);
    s->tls_ = std::move(*t);
  }
  s->stats_ = std::make_shared<http::ServerStats>();
  s->router_ = apiRouter(ctx, o.metrics_listen.empty());
  s->metrics_router_ = metricsRouter(ctx);
  if (s->creds_) s->router_.setCredentials([c = s->creds_.get()] { return c->current(); });
  http::ServerOptions so;
  so.max_connections = o.max_connections;
  so.max_per_peer = o.max_per_peer;
  so.max_requests_per_connection = o.max_requests_per_connection;
  so.server_name = "nsegress-controller";
  so.stats = s->stats_;
  http::ServerOptions tls_so = so;
  tls_so.tls = s->tls_;
  auto servers = HttpServer::listenAll(s->io_, {{o.listen, &s->router_, so},
                                                {o.tls_listen, &s->router_, tls_so},
                                                {o.metrics_listen, &s->metrics_router_, so}});
  if (!servers) return servers.error();
  s->servers_ = std::move(*servers);
  const char* names[] = {"HTTP API", "HTTPS API", "metrics"};
  for (size_t i = 0; i < s->servers_.size(); ++i)
    if (s->servers_[i]) spdlog::info("{} on port {}", names[i], s->servers_[i]->port());
  if (s->creds_)
    spdlog::info("credentials from {}: feeds and the API need them", o.auth_file);
  else if (!o.listen.empty() || !o.tls_listen.empty())
    spdlog::warn(
        "no --auth-file: feeds and the read API answer anyone who can connect; changes "
        "only from this host");
  std::vector<std::shared_ptr<http::TlsContext>> tls;
  if (s->tls_) tls.push_back(s->tls_);
  metrics.addCollectable(http::serverMetrics(*s->stats_, std::move(tls)));
  if (s->creds_) metrics.addCollectable(std::make_shared<CredentialsMetrics>(*s->creds_));
  s->thread_ = std::thread([srv = s.get()] {
    auto guard = boost::asio::make_work_guard(srv->io_);
    srv->io_.run();
  });
  return s;
}

uint16_t Serving::apiPort() const {
  return servers_[0] ? servers_[0]->port() : 0;
}
uint16_t Serving::tlsPort() const {
  return servers_[1] ? servers_[1]->port() : 0;
}

Serving::~Serving() {
  servers_.clear();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace nsegress::controller
