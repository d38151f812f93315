#include "nsegress/http/server.h"

#include <prometheus/metric_family.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <list>
#include <map>
#include <mutex>

namespace nsegress::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// What the server needs of a connection, whatever its stream type.
struct SessionBase {
  virtual ~SessionBase() = default;
  // Closes the connection (from any thread).
  virtual void abort() = 0;
  // When it began waiting for request bytes (0: it is not waiting).
  std::atomic<int64_t> waiting_since{0};
};

int64_t nowTicks() {
  return Clock::now().time_since_epoch().count();
}

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(boost::asio::io_context& io, const Router& r, ServerOptions o)
      : acceptor(io),
        retry(io),
        router(r),
        opts(std::move(o)),
        slow(std::make_shared<boost::asio::thread_pool>(opts.slow_workers)),
        stats(opts.stats ? opts.stats : std::make_shared<ServerStats>()) {}
  tcp::acceptor acceptor;
  boost::asio::steady_timer retry;
  const Router& router;
  ServerOptions opts;
  // Joined by ~Server, so no slow handler outlives the server.
  std::shared_ptr<boost::asio::thread_pool> slow;
  std::shared_ptr<ServerStats> stats;

  // Open connections (any thread may close one: under mu).
  std::mutex mu;
  std::list<std::weak_ptr<SessionBase>> sessions;
  std::map<std::string, size_t> per_peer;
  using Slot = std::list<std::weak_ptr<SessionBase>>::iterator;

  void accept();
  // Whether a connection from `peer` may be served now; may close the
  // oldest slow connection to make room.
  bool admit(const std::string& peer);
  Slot add(const std::shared_ptr<SessionBase>& s, const std::string& peer) {
    std::lock_guard l(mu);
    per_peer[peer]++;
    stats->connections++;
    stats->accepted++;
    return sessions.insert(sessions.end(), s);
  }
  void remove(Slot slot, const std::string& peer) {
    std::lock_guard l(mu);
    sessions.erase(slot);
    if (auto it = per_peer.find(peer); it != per_peer.end() && --it->second == 0)
      per_peer.erase(it);
    stats->connections--;
  }
};

bool Server::Impl::admit(const std::string& peer) {
  std::unique_lock l(mu);
  if (auto it = per_peer.find(peer); it != per_peer.end() && it->second >= opts.max_per_peer) {
    stats->refused_peer++;
    return false;
  }
  if (sessions.size() < opts.max_connections) return true;
  // Full: make room by closing the connection that has waited longest for
  // its request's bytes, if that is over a second (a slow or idle client);
  // connections at work are never cut.
  const int64_t limit =
      nowTicks() - std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(1)).count();
  SessionBase* oldest = nullptr;
  int64_t oldest_at = limit;
  // Strong references are dropped after the lock (a session's destructor
  // takes it).
  std::vector<std::shared_ptr<SessionBase>> alive;
  alive.reserve(sessions.size());
  for (const auto& w : sessions)
    if (auto s = w.lock()) {
      const int64_t at = s->waiting_since.load();
      if (at != 0 && at < oldest_at) {
        oldest_at = at;
        oldest = s.get();
      }
      alive.push_back(std::move(s));
    }
  if (!oldest) {
    stats->refused_limit++;
    l.unlock();
    return false;
  }
  oldest->waiting_since = 0;  // not chosen twice
  oldest->abort();
  stats->evicted++;
  l.unlock();
  return true;
}

namespace {

constexpr bool kTls = true;

// One connection: (a TLS handshake,) then requests, each answered in turn,
// kept alive up to the limit.
template <typename Stream, bool Tls>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream, Tls>> {
 public:
  Session(Stream s, std::shared_ptr<Server::Impl> server, std::string peer)
      : stream_(std::move(s)), server_(std::move(server)), peer_(std::move(peer)) {}
  ~Session() override { server_->remove(slot_, peer_); }

  void start(Server::Impl::Slot slot) {
    slot_ = slot;
    if constexpr (Tls) {
      waiting_since = nowTicks();
      lowest().expires_after(server_->opts.timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) {
                                  self->server_->stats->tls_failures++;
                                  return;
                                }
                                self->client_cn_ = verifiedClientCn(self->stream_.native_handle());
                                self->read();
                              });
    } else {
      read();
    }
  }

  void abort() override {
    boost::asio::post(lowest().get_executor(),
                      [self = this->shared_from_this()] { self->lowest().close(); });
  }

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->opts.header_limit));
    parser_->body_limit(server_->opts.body_limit);
    waiting_since = nowTicks();
    lowest().expires_after(server_->opts.timeout);
    bhttp::async_read(
        stream_, buf_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    waiting_since = 0;
    if (ec == bhttp::error::end_of_stream || ec == boost::asio::error::operation_aborted) return;
    if (ec) {
      // A kept-alive connection that went quiet is closed without a word.
      if (served_ > 0 && buf_.size() == 0 && !parser_->got_some()) return;
      if (ec == beast::error::timeout) return;
      return respond(jsonError(400, "malformed HTTP request: " + ec.message()), false);
    }
    auto& req = parser_->get();
    head_ = req.method() == bhttp::verb::head;
    HttpRequest r = HttpRequest::make(std::string(req.method_string()), std::string(req.target()));
    for (const auto& f : req) r.headers.add(std::string(f.name_string()), std::string(f.value()));
    r.body = req.body();
    r.peer = peer_;
    r.tls = Tls;
    r.client_cert_cn = client_cn_;
    const bool keep = req.keep_alive() && ++served_ < server_->opts.max_requests_per_connection;
    auto m = server_->router.match(r.method, r.path);
    if (m.route && m.route->cost == Router::Cost::kSlow) {
      // Off the I/O thread; the answer comes back to this connection's
      // executor.
      boost::asio::post(*server_->slow, [self = this->shared_from_this(), r = std::move(r), keep] {
        HttpResponse resp = self->run(r);
        boost::asio::post(self->lowest().get_executor(),
                          [self, resp = std::move(resp), keep]() mutable {
                            self->respond(std::move(resp), keep);
                          });
      });
      return;
    }
    respond(run(r), keep);
  }

  HttpResponse run(const HttpRequest& r) {
    try {
      return server_->router.dispatch(r);
    } catch (const std::exception&) {
      return jsonError(500, "internal error");
    }
  }

  void respond(HttpResponse r, bool keep) {
    server_->stats->requests++;
    if (r.status == 401) server_->stats->unauthorized++;
    res_ = {};
    res_.version(11);
    res_.result(static_cast<unsigned>(r.status));
    res_.set(bhttp::field::content_type, r.content_type);
    res_.set(bhttp::field::server, server_->opts.server_name);
    for (const auto& [k, v] : r.headers.items()) res_.set(k, v);
    res_.body() = std::move(r.body);
    res_.keep_alive(keep);
    res_.prepare_payload();  // HEAD too: the length GET would send
    // A 304 has no content, and no length that would describe the feed's.
    if (r.status == 304) res_.erase(bhttp::field::content_length);
    lowest().expires_after(server_->opts.timeout);
    auto done = [self = this->shared_from_this(), keep](beast::error_code ec, size_t) {
      if (ec) return;
      if (keep) return self->read();
      self->close();
    };
    if (head_) {
      // The header alone, with GET's Content-Length.
      sr_.emplace(res_);
      bhttp::async_write_header(stream_, *sr_, std::move(done));
    } else {
      bhttp::async_write(stream_, res_, std::move(done));
    }
  }

  void close() {
    if constexpr (Tls) {
      lowest().expires_after(std::chrono::seconds(1));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    } else {
      beast::error_code ignored;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  Stream stream_;
  std::shared_ptr<Server::Impl> server_;
  const std::string peer_;
  Server::Impl::Slot slot_;
  std::string client_cn_;
  beast::flat_buffer buf_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  std::optional<bhttp::response_serializer<bhttp::string_body>> sr_;
  bool head_ = false;
  size_t served_ = 0;
};

}  // namespace

void Server::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (ec) {
      // Out of file descriptors (or another accept failure): the connection
      // stays queued and accept() would fail again at once. Wait before the
      // next attempt instead of spinning.
      self->stats->accept_errors++;
      self->retry.expires_after(self->opts.accept_backoff);
      self->retry.async_wait([self](beast::error_code e) {
        if (!e) self->accept();
      });
      return;
    }
    beast::error_code pec;
    const auto ep = s.remote_endpoint(pec);
    const std::string peer = pec ? "" : ep.address().to_string();
    if (self->admit(peer)) {
      if (self->opts.tls) {
        using S = Session<beast::ssl_stream<beast::tcp_stream>, kTls>;
        auto ctx = self->opts.tls->current();
        auto session = std::make_shared<S>(beast::ssl_stream<beast::tcp_stream>(std::move(s), *ctx),
                                           self, peer);
        session->start(self->add(session, peer));
      } else {
        using S = Session<beast::tcp_stream, !kTls>;
        auto session = std::make_shared<S>(beast::tcp_stream(std::move(s)), self, peer);
        session->start(self->add(session, peer));
      }
    }
    self->accept();
  });
}

Result<std::vector<std::unique_ptr<Server>>> Server::listenAll(
    boost::asio::io_context& io, const std::vector<Listener>& listeners) {
  std::vector<std::unique_ptr<Server>> out;
  for (const auto& l : listeners) {
    if (l.address.empty()) {
      out.push_back(nullptr);
      continue;
    }
    auto s = listen(io, l.address, *l.router, l.options);
    if (!s) return s.error();
    out.push_back(std::move(*s));
  }
  return out;
}

Result<std::unique_ptr<Server>> Server::listen(boost::asio::io_context& io,
                                               const std::string& host_port, const Router& router,
                                               ServerOptions o) {
  const auto colon = host_port.rfind(':');
  const auto bad = [&] {
    return makeError(EINVAL, "listen address \"" + host_port.substr(0, 100) +
                                 "\": expected host:port (e.g. 127.0.0.1:8080 or [::1]:8080)");
  };
  if (colon == std::string::npos || colon + 1 == host_port.size() ||
      host_port.size() - colon - 1 > 5)
    return bad();
  unsigned port = 0;
  for (char c : host_port.substr(colon + 1)) {
    if (c < '0' || c > '9') return bad();
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port > 65535) return bad();
  std::string host = host_port.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return listen(io, host, static_cast<uint16_t>(port), router, std::move(o));
}

Result<std::unique_ptr<Server>> Server::listen(boost::asio::io_context& io, const std::string& host,
                                               uint16_t port, const Router& router,
                                               ServerOptions o) {
  auto impl = std::make_shared<Impl>(io, router, std::move(o));
  beast::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  if (ec) return makeError(EINVAL, "listen address " + host + ": " + ec.message());
  tcp::endpoint ep(addr, port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec)
    return makeError(EADDRINUSE,
                     "listen " + host + ":" + std::to_string(port) + ": " + ec.message());
  impl->accept();
  return std::unique_ptr<Server>(new Server(impl));
}

Server::Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
uint64_t Server::acceptErrors() const {
  return impl_->stats->accept_errors;
}
const ServerStats& Server::stats() const {
  return *impl_->stats;
}

Server::~Server() {
  beast::error_code ec;
  impl_->acceptor.close(ec);
  impl_->retry.cancel();
  // Open connections end now too (aborted outside the lock, which their
  // destructors take).
  std::vector<std::shared_ptr<SessionBase>> open;
  {
    std::lock_guard l(impl_->mu);
    for (const auto& w : impl_->sessions)
      if (auto s = w.lock()) open.push_back(std::move(s));
  }
  for (const auto& s : open) s->abort();
  open.clear();
  impl_->slow->join();
}
uint16_t Server::port() const {
  return impl_->acceptor.local_endpoint().port();
}

namespace {
class StatsCollectable : public prometheus::Collectable {
 public:
  StatsCollectable(const ServerStats& s, std::vector<std::shared_ptr<TlsContext>> tls)
      : s_(s), tls_(std::move(tls)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    auto fam = [](std::string name, std::string help, prometheus::MetricType t,
                  std::vector<std::pair<std::map<std::string, std::string>, double>> values) {
      prometheus::MetricFamily f{std::move(name), std::move(help), t, {}};
      for (auto& [labels, v] : values) {
        prometheus::ClientMetric m;
        for (auto& [k, lv] : labels) m.label.push_back({k, lv});
        if (t == prometheus::MetricType::Counter)
          m.counter.value = v;
        else
          m.gauge.value = v;
        f.metric.push_back(std::move(m));
      }
      return f;
    };
    using T = prometheus::MetricType;
    auto d = [](const std::atomic<uint64_t>& a) { return static_cast<double>(a.load()); };
    double reloads = 0, failures = 0;
    for (const auto& t : tls_) {
      reloads += static_cast<double>(t->reloads());
      failures += static_cast<double>(t->reloadFailures());
    }
    return {
        fam("nsegress_http_connections", "HTTP connections open now", T::Gauge,
            {{{}, d(s_.connections)}}),
        fam("nsegress_http_connections_accepted_total", "HTTP connections accepted", T::Counter,
            {{{}, d(s_.accepted)}}),
        fam("nsegress_http_connections_refused_total",
            "HTTP connections refused at once: limit (all slots busy at work), peer (one address "
            "over its share)",
            T::Counter,
            {{{{"reason", "limit"}}, d(s_.refused_limit)},
             {{{"reason", "peer"}}, d(s_.refused_peer)}}),
        fam("nsegress_http_connections_evicted_total",
            "Slow or idle HTTP connections closed to make room for new ones", T::Counter,
            {{{}, d(s_.evicted)}}),
        fam("nsegress_http_requests_total", "HTTP requests answered", T::Counter,
            {{{}, d(s_.requests)}}),
        fam("nsegress_http_unauthorized_total",
            "HTTP requests refused for missing or wrong credentials (401)", T::Counter,
            {{{}, d(s_.unauthorized)}}),
        fam("nsegress_http_tls_handshake_failures_total", "TLS handshakes that failed", T::Counter,
            {{{}, d(s_.tls_failures)}}),
        fam("nsegress_http_accept_errors_total", "accept() failures (e.g. out of descriptors)",
            T::Counter, {{{}, d(s_.accept_errors)}}),
        fam("nsegress_http_tls_reloads_total", "TLS certificates reloaded after a change",
            T::Counter, {{{{"result", "ok"}}, reloads}, {{{"result", "failed"}}, failures}}),
    };
  }

 private:
  const ServerStats& s_;
  std::vector<std::shared_ptr<TlsContext>> tls_;
};
}  // namespace

std::shared_ptr<prometheus::Collectable> serverMetrics(
    const ServerStats& stats, std::vector<std::shared_ptr<TlsContext>> tls) {
  return std::make_shared<StatsCollectable>(stats, std::move(tls));
}

}  // namespace nsegress::http
