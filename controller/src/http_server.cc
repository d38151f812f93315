#include "nsegress/controller/http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace nsegress::controller {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, HttpServer::Handler h) : stream_(std::move(s)), handler_(std::move(h)) {}
  void start() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(
        stream_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream) return;
    HttpResponse r;
    if (ec) {
      r = {400, "application/json",
           "{\"error\": \"malformed HTTP request: " + ec.message() + "\"}\n"};
    } else {
      auto& req = parser_->get();
      try {
        r = handler_(std::string(req.method_string()), std::string(req.target()));
      } catch (const std::exception& e) {
        r = {500, "application/json", std::string("{\"error\": \"internal error\"}\n")};
      }
      if (req.method() == http::verb::head) r.body.clear();
    }
    res_.result(static_cast<unsigned>(r.status));
    res_.set(http::field::content_type, r.content_type);
    res_.set(http::field::server, "nsegress-controller");
    res_.body() = std::move(r.body);
    res_.keep_alive(false);
    res_.prepare_payload();
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  HttpServer::Handler handler_;
};

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(boost::asio::io_context& io, Handler h) : acceptor(io), handler(std::move(h)) {}
  tcp::acceptor acceptor;
  Handler handler;
  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (ec == boost::asio::error::operation_aborted) return;
      if (!ec) std::make_shared<Session>(std::move(s), self->handler)->start();
      self->accept();
    });
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::listen(boost::asio::io_context& io,
                                                       const std::string& host, uint16_t port,
                                                       Handler h) {
  auto impl = std::make_shared<Impl>(io, std::move(h));
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
HttpServer::~HttpServer() {
  beast::error_code ec;
  impl_->acceptor.close(ec);
}
uint16_t HttpServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

}  // namespace nsegress::controller
