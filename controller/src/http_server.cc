#include "nsegress/controller/http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace nsegress::controller {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(boost::asio::io_context& io, const Router& r, HttpServerOptions o)
      : acceptor(io),
        retry(io),
        router(r),
        opts(o),
        slow(std::make_shared<boost::asio::thread_pool>(o.slow_workers)) {}
  tcp::acceptor acceptor;
  boost::asio::steady_timer retry;
  std::atomic<uint64_t> accept_errors{0};
  const Router& router;
  HttpServerOptions opts;
  // Joined by ~HttpServer, so no slow handler outlives the server.
  std::shared_ptr<boost::asio::thread_pool> slow;
  void accept();
};

namespace {

HttpRequest fromBeast(const http::request<http::string_body>& req, const std::string& peer) {
  HttpRequest r = HttpRequest::make(std::string(req.method_string()), std::string(req.target()));
  for (const auto& f : req) r.headers.add(std::string(f.name_string()), std::string(f.value()));
  r.body = req.body();
  r.peer = peer;
  return r;
}

// One connection: read one request, answer it, close. `Stream` is the
// transport (plain TCP today).
template <typename Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream s, std::shared_ptr<HttpServer::Impl> server)
      : stream_(std::move(s)), server_(std::move(server)) {}
  void start() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->opts.header_limit));
    parser_->body_limit(server_->opts.body_limit);
    beast::get_lowest_layer(stream_).expires_after(server_->opts.timeout);
    http::async_read(
        stream_, buf_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream) return;
    if (ec) return respond(jsonError(400, "malformed HTTP request: " + ec.message()));
    auto& req = parser_->get();
    head_ = req.method() == http::verb::head;
    beast::error_code pec;
    const auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(pec);
    HttpRequest r = fromBeast(req, pec ? "" : ep.address().to_string());
    auto m = server_->router.match(r.method, r.path);
    if (m.route && m.route->cost == Router::Cost::kSlow) {
      // Off the I/O thread; the answer comes back to this connection's
      // executor.
      boost::asio::post(*server_->slow, [self = this->shared_from_this(), r = std::move(r)] {
        HttpResponse resp = self->run(r);
        boost::asio::post(self->stream_.get_executor(),
                          [self, resp = std::move(resp)]() mutable { self->respond(resp); });
      });
      return;
    }
    respond(run(r));
  }

  HttpResponse run(const HttpRequest& r) {
    try {
      return server_->router.dispatch(r);
    } catch (const std::exception&) {
      return jsonError(500, "internal error");
    }
  }

  void respond(HttpResponse r) {
    res_.result(static_cast<unsigned>(r.status));
    res_.set(http::field::content_type, r.content_type);
    res_.set(http::field::server, "nsegress-controller");
    for (const auto& [k, v] : r.headers.items()) res_.set(k, v);
    res_.body() = std::move(r.body);
    res_.keep_alive(false);
    res_.prepare_payload();  // HEAD too: the length GET would send
    // A 304 has no content, and no length that would describe the feed's.
    if (r.status == 304) res_.erase(http::field::content_length);
    beast::get_lowest_layer(stream_).expires_after(server_->opts.timeout);
    auto done = [self = this->shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_send, ignored);
    };
    if (head_) {
      // The header alone, with GET's Content-Length.
      sr_.emplace(res_);
      http::async_write_header(stream_, *sr_, std::move(done));
    } else {
      http::async_write(stream_, res_, std::move(done));
    }
  }

  Stream stream_;
  std::shared_ptr<HttpServer::Impl> server_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::optional<http::response_serializer<http::string_body>> sr_;
  bool head_ = false;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (!ec) {
      std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(s)), self)->start();
      self->accept();
      return;
    }
    // Out of file descriptors (or another accept failure): the connection
    // stays queued and accept() would fail again at once. Wait before the
    // next attempt instead of spinning.
    self->accept_errors++;
    self->retry.expires_after(self->opts.accept_backoff);
    self->retry.async_wait([self](beast::error_code e) {
      if (!e) self->accept();
    });
  });
}

Result<std::vector<std::unique_ptr<HttpServer>>> HttpServer::listenAll(
    boost::asio::io_context& io,
    const std::vector<std::pair<std::string, const Router*>>& listeners) {
  std::vector<std::unique_ptr<HttpServer>> out;
  for (const auto& [addr, router] : listeners) {
    if (addr.empty()) {
      out.push_back(nullptr);
      continue;
    }
    auto s = listen(io, addr, *router);
    if (!s) return s.error();
    out.push_back(std::move(*s));
  }
  return out;
}

Result<std::unique_ptr<HttpServer>> HttpServer::listen(boost::asio::io_context& io,
                                                       const std::string& host_port,
                                                       const Router& router, HttpServerOptions o) {
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
  return listen(io, host, static_cast<uint16_t>(port), router, o);
}

Result<std::unique_ptr<HttpServer>> HttpServer::listen(boost::asio::io_context& io,
                                                       const std::string& host, uint16_t port,
                                                       const Router& router, HttpServerOptions o) {
  auto impl = std::make_shared<Impl>(io, router, o);
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
  return std::unique_ptr<HttpServer>(new HttpServer(impl));
}

HttpServer::HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
uint64_t HttpServer::acceptErrors() const {
  return impl_->accept_errors;
}

HttpServer::~HttpServer() {
  beast::error_code ec;
  impl_->acceptor.close(ec);
  impl_->retry.cancel();
  impl_->slow->join();
}
uint16_t HttpServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

}  // namespace nsegress::controller
