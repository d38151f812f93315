#include "nsegress/http/client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>

namespace nsegress::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

Result<Url> Url::parse(const std::string& s) {
  const auto bad = [&](const std::string& why) {
    // Echoed without user info (a password) and without control bytes (a
    // forged log line).
    std::string shown = s.substr(0, 80);
    if (auto at = shown.find('@'); at != std::string::npos) {
      const auto sep = shown.find("://");
      const size_t from = sep == std::string::npos || sep > at ? 0 : sep + 3;
      shown.replace(from, at - from, "***");
    }
    for (auto& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    return makeError(EINVAL, "URL \"" + shown + "\": " + why);
  };
  if (s.empty() || s.size() > 2048) return bad("1 to 2048 bytes");
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f) return bad("printable ASCII without spaces only");
  const auto sep = s.find("://");
  if (sep == std::string::npos) return bad("expected http:// or https://");
  std::string scheme = s.substr(0, sep);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  Url u;
  if (scheme == "https")
    u.tls = true;
  else if (scheme != "http")
    return bad("the scheme must be http or https");
  const std::string rest = s.substr(sep + 3);
  const auto slash = rest.find_first_of("/?");
  const std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (u.target.front() == '?') u.target = "/" + u.target;
  if (u.target.find('#') != std::string::npos) return bad("no fragment (#)");
  if (authority.find('@') != std::string::npos)
    return bad("no user info (credentials go in --webhook-secret-file)");
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return bad("unclosed [ in the host");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return bad("junk after ]");
      port = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.find(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty() || u.host.size() > 253) return bad("a host is required");
  for (char c : u.host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ':'))
      return bad("the host has a character no host name has");
  if (port.empty()) {
    u.port = u.tls ? 443 : 80;
  } else {
    if (port.size() > 5) return bad("the port must be 1-65535");
    unsigned p = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return bad("the port must be 1-65535");
      p = p * 10 + static_cast<unsigned>(c - '0');
    }
    if (p == 0 || p > 65535) return bad("the port must be 1-65535");
    u.port = static_cast<uint16_t>(p);
  }
  return u;
}

std::string Url::redacted() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::string(tls ? "https" : "http") + "://" + h + ":" + std::to_string(port) +
         target.substr(0, target.find('?'));
}

namespace {

template <typename Stream>
Result<ClientResponse> exchange(Stream& stream, const Url& url, const std::string& method,
                                const std::vector<std::pair<std::string, std::string>>& headers,
                                const std::string& body, const ClientOptions& o) {
  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(url.target);
  req.version(11);
  req.set(bhttp::field::host,
          url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host);
  req.set(bhttp::field::user_agent, "nsegress");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.keep_alive(false);
  req.prepare_payload();
  beast::error_code ec;
  bhttp::write(stream, req, ec);
  if (ec) return makeError(EIO, url.redacted() + ": send: " + ec.message());
  beast::flat_buffer buf;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(o.max_response_bytes);
  bhttp::read(stream, buf, parser, ec);
  if (ec) return makeError(EIO, url.redacted() + ": answer: " + ec.message());
  return ClientResponse{static_cast<int>(parser.get().result_int()), parser.get().body()};
}

}  // namespace

Result<ClientResponse> request(const Url& url, const std::string& method,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               const std::string& body, const ClientOptions& o) {
  boost::asio::io_context io;
  beast::error_code ec;
  tcp::resolver resolver(io);
  auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) return makeError(EHOSTUNREACH, url.redacted() + ": resolve: " + ec.message());
  beast::tcp_stream tcp_stream(io);
  tcp_stream.expires_after(o.timeout);
  tcp_stream.connect(endpoints, ec);
  if (ec) return makeError(ECONNREFUSED, url.redacted() + ": connect: " + ec.message());
  if (!url.tls) return exchange(tcp_stream, url, method, headers, body, o);
  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (o.ca_file.empty())
    ctx.set_default_verify_paths(ec);
  else
    ctx.load_verify_file(o.ca_file, ec);
  if (ec) return makeError(EINVAL, "CA " + o.ca_file + ": " + ec.message());
  ctx.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), ctx);
  // The server's certificate must name the host (or address) asked for.
  SSL* s = stream.native_handle();
  beast::error_code not_an_address;
  (void)boost::asio::ip::make_address(url.host, not_an_address);
  if (!not_an_address) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), url.host.c_str());
  } else {
    SSL_set_tlsext_host_name(s, url.host.c_str());
    SSL_set1_host(s, url.host.c_str());
  }
  stream.handshake(ssl::stream_base::client, ec);
  if (ec) return makeError(EPROTO, url.redacted() + ": TLS: " + ec.message());
  return exchange(stream, url, method, headers, body, o);
}

}  // namespace nsegress::http
