#include "nsegress/kube/client.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <thread>

#include "nsegress/common/file.h"

namespace nsegress::kube {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

std::chrono::nanoseconds RateLimiter::reserve(Clock::time_point now) {
  std::lock_guard l(mu_);
  if (last_)
    tokens_ =
        std::min(burst_, tokens_ + std::chrono::duration<double>(now - *last_).count() * qps_);
  last_ = now;
  tokens_ -= 1;
  if (tokens_ >= 0) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<int64_t>(-tokens_ / qps_ * 1e9));
}

// A kept-alive connection to the API server (requests only; each watch has
// its own). Owns its I/O context, so a request on it runs on the caller's
// thread like every other request.
struct Client::Conn {
  boost::asio::io_context io;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
};

struct Client::Impl {
  std::unique_ptr<ssl::context> tls;
  std::mutex token_mu;
  std::string token;
  std::optional<FileStamp> token_stamp;
  mutable std::mutex denied_mu;
  std::map<std::string, uint64_t> denied;
  std::map<std::string, std::chrono::steady_clock::time_point> logged;
  std::mutex pool_mu;
  std::vector<std::unique_ptr<Conn>> idle;  // kept-alive connections, most recent last
};

namespace {

// "<verb> <resource>" as RBAC sees a request, e.g. "list pods", "patch
// namespaces", "update egressips/status".
std::string rbacOf(const std::string& method, const std::string& target) {
  const std::string path = target.substr(0, target.find('?'));
  const bool watch =
      target.find("watch=1") != std::string::npos || target.find("watch=true") != std::string::npos;
  std::vector<std::string> seg;
  for (size_t i = 0; i < path.size();) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) seg.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  size_t k = seg.size() && seg[0] == "api" ? 2 : 3;  // after /api/v1 or /apis/<group>/<version>
  if (seg.size() > k + 1 && seg[k] == "namespaces" && seg.size() > k + 2) k += 2;
  std::string resource = k < seg.size() ? seg[k] : "?";
  const bool named = k + 1 < seg.size();
  if (k + 2 < seg.size()) resource += "/" + seg[k + 2];
  std::string verb = method == "GET"      ? (watch   ? "watch"
                                             : named ? "get"
                                                     : "list")
                     : method == "POST"   ? "create"
                     : method == "PUT"    ? "update"
                     : method == "PATCH"  ? "patch"
                     : method == "DELETE" ? "delete"
                                          : method;
  return verb + " " + resource.substr(0, 64);
}

}  // namespace

std::string Client::token(bool force_reread) {
  if (cfg_.token_file.empty()) return cfg_.token;
  std::lock_guard l(impl_->token_mu);
  struct stat st {};
  const bool changed =
      ::stat(cfg_.token_file.c_str(), &st) == 0 &&
      (force_reread || !impl_->token_stamp ||
       !(*impl_->token_stamp ==
         FileStamp{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                   static_cast<uint64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec}));
  if (changed) {
    if (auto c = readFileBounded(cfg_.token_file, 64 * 1024)) {
      const std::string t = trimToken(c->text);
      if (!t.empty() && t != impl_->token && impl_->token_stamp)
        spdlog::info("kube: token re-read from {}", cfg_.token_file);
      if (!t.empty()) impl_->token = t;
      impl_->token_stamp = c->stamp;
    } else {
      spdlog::warn("kube: token file: {} (keeping the last token)", c.error().message);
    }
  }
  return impl_->token.empty() ? cfg_.token : impl_->token;
}

void Client::noteDenied(int status, const std::string& verb, const std::string& path) {
  if (status != 401 && status != 403) return;
  const std::string key = std::to_string(status) + " " + rbacOf(verb, path);
  std::lock_guard l(impl_->denied_mu);
  const uint64_t n = ++impl_->denied[key];
  const auto now = std::chrono::steady_clock::now();
  auto& last = impl_->logged[key];
  if (n == 1 || now - last > std::chrono::seconds(30)) {
    last = now;
    spdlog::warn("kube: {} {} ({} so far): {}", status == 401 ? "unauthenticated" : "forbidden",
                 key.substr(4), n,
                 status == 401 ? "the token is not accepted (expired or revoked?)"
                               : "RBAC does not allow it");
  }
}

std::map<std::string, uint64_t> Client::denied() const {
  std::lock_guard l(impl_->denied_mu);
  return impl_->denied;
}

Client::Client(KubeConfig config, ClientOptions opts)
    : cfg_(std::move(config)),
      opts_(opts),
      limiter_(opts.qps, opts.burst),
      impl_(std::make_unique<Impl>()) {
  if (!cfg_.tls) return;
  impl_->tls = std::make_unique<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  if (cfg_.insecure_skip_verify) {
    impl_->tls->set_verify_mode(ssl::verify_none);
  } else {
    impl_->tls->set_verify_mode(ssl::verify_peer);
    if (cfg_.ca_pem.empty())
      impl_->tls->set_default_verify_paths(ec);
    else
      impl_->tls->add_certificate_authority(boost::asio::buffer(cfg_.ca_pem), ec);
  }
  if (!cfg_.client_cert_pem.empty()) {
    impl_->tls->use_certificate_chain(boost::asio::buffer(cfg_.client_cert_pem), ec);
    impl_->tls->use_private_key(boost::asio::buffer(cfg_.client_key_pem), ssl::context::pem, ec);
  }
}

Client::~Client() = default;

namespace {

template <typename Stream, typename Req>
void prepare(Req& req, const KubeConfig& cfg, const std::string& token) {
  req.set(http::field::host, cfg.host);
  req.set(http::field::user_agent, "nsegress/0.1");
  req.set(http::field::accept, "application/json");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
}

// Runs one asynchronous operation to completion on `io` and returns its error.
// Beast's stream timeouts (expires_after) apply to asynchronous operations
// only, so the client is asynchronous underneath: a silent server is a
// timeout error, never a hang.
template <typename Start>
boost::system::error_code await(boost::asio::io_context& io, Start&& start) {
  boost::system::error_code result;
  bool done = false;
  start([&](boost::system::error_code ec, auto&&...) {
    result = ec;
    done = true;
  });
  io.restart();
  while (!done && io.run_one()) {
  }
  return result;
}

void check(boost::system::error_code ec) {
  if (ec) throw boost::system::system_error(ec);
}

Result<std::unique_ptr<Client::Conn>> connectTo(ssl::context* tls, const KubeConfig& cfg,
                                                std::chrono::seconds timeout) {
  auto c = std::make_unique<Client::Conn>();
  try {
    tcp::resolver resolver(c->io);
    auto endpoints = resolver.resolve(cfg.host, cfg.port);
    if (!tls) {
      c->plain.emplace(c->io);
      c->plain->expires_after(timeout);
      check(await(c->io, [&](auto h) { c->plain->async_connect(endpoints, h); }));
      return c;
    }
    c->tls.emplace(c->io, *tls);
    auto& stream = *c->tls;
    if (!cfg.insecure_skip_verify) {
      boost::system::error_code ec;
      (void)boost::asio::ip::make_address(cfg.host, ec);  // ec set: a name, not an IP literal
      if (ec)
        stream.set_verify_callback(ssl::host_name_verification(cfg.host));
      else
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(stream.native_handle()), cfg.host.c_str());
      if (ec) SSL_set_tlsext_host_name(stream.native_handle(), cfg.host.c_str());
    }
    beast::get_lowest_layer(stream).expires_after(timeout);
    check(
        await(c->io, [&](auto h) { beast::get_lowest_layer(stream).async_connect(endpoints, h); }));
    beast::get_lowest_layer(stream).expires_after(timeout);
    check(await(c->io, [&](auto h) { stream.async_handshake(ssl::stream_base::client, h); }));
    return c;
  } catch (const boost::system::system_error& e) {
    return makeError(e.code().value() ? e.code().value() : EIO,
                     "kube " + cfg.host + ":" + cfg.port + ": " + e.code().message());
  }
}

// Runs `fn(stream, arm)` on the connection's stream.
template <typename Fn>
Result<int> onConn(Client::Conn& c, const KubeConfig& cfg, std::chrono::seconds timeout, Fn&& fn) {
  try {
    if (c.plain) {
      auto arm = [&] { c.plain->expires_after(timeout); };
      return fn(*c.plain, arm);
    }
    auto arm = [&] { beast::get_lowest_layer(*c.tls).expires_after(timeout); };
    return fn(*c.tls, arm);
  } catch (const boost::system::system_error& e) {
    return makeError(e.code().value() ? e.code().value() : EIO,
                     "kube " + cfg.host + ":" + cfg.port + ": " + e.code().message());
  }
}

}  // namespace

Result<Response> Client::request(const std::string& verb, const std::string& path,
                                 const std::string& body, const std::string& content_type) {
  if (auto wait = limiter_.reserve(RateLimiter::Clock::now()); wait.count() > 0) {
    ++throttled_;
    std::this_thread::sleep_for(wait);
  }
  auto once = [&](const std::string& bearer) -> Result<Response> {
    // On a kept-alive connection when one is idle; one that the server has
    // closed meanwhile fails before any response and is replaced once.
    for (int attempt = 0;; ++attempt) {
      std::unique_ptr<Conn> conn;
      {
        std::lock_guard l(impl_->pool_mu);
        if (!impl_->idle.empty()) {
          conn = std::move(impl_->idle.back());
          impl_->idle.pop_back();
        }
      }
      const bool reused = conn != nullptr;
      if (!conn) {
        auto c = connectTo(impl_->tls.get(), cfg_, opts_.timeout);
        if (!c) return c.error();
        conn = std::move(*c);
        ++connections_;
      }
      ++requests_;
      Response out;
      bool answered = false, keep = false;
      auto& io = conn->io;
      auto r = onConn(*conn, cfg_, opts_.timeout, [&](auto& stream, auto arm) -> Result<int> {
        http::request<http::string_body> req{http::string_to_verb(verb), path, 11};
        prepare<decltype(stream)>(req, cfg_, bearer);
        if (!body.empty()) {
          req.set(http::field::content_type, content_type);
          req.body() = body;
        }
        req.prepare_payload();
        arm();
        check(await(io, [&](auto h) { http::async_write(stream, req, h); }));
        beast::flat_buffer buf;
        http::response_parser<http::string_body> parser;
        parser.body_limit(opts_.max_body);
        arm();
        check(await(io, [&](auto h) { http::async_read_header(stream, buf, parser, h); }));
        answered = true;
        // Refuse a declared body over the limit before reading it.
        if (parser.content_length() && *parser.content_length() > opts_.max_body)
          throw boost::system::system_error(make_error_code(http::error::body_limit));
        arm();
        check(await(io, [&](auto h) { http::async_read(stream, buf, parser, h); }));
        out.status = static_cast<int>(parser.get().result_int());
        out.body = std::move(parser.get().body());
        keep = parser.get().keep_alive() && buf.size() == 0;
        return out.status;
      });
      if (r) {
        if (keep) {
          std::lock_guard l(impl_->pool_mu);
          if (impl_->idle.size() < kMaxIdle) impl_->idle.push_back(std::move(conn));
        }
        return out;
      }
      if (reused && !answered && attempt == 0) continue;
      return r.error();
    }
  };
  const std::string bearer = token();
  auto r = once(bearer);
  // A rotated token: read the file again and retry once with the new one.
  if (r && r->status == 401 && !cfg_.token_file.empty()) {
    const std::string fresh = token(/*force_reread=*/true);
    if (fresh != bearer) r = once(fresh);
  }
  if (r) noteDenied(r->status, verb, path);
  return r;
}

Result<int> Client::watch(const std::string& path,
                          const std::function<bool(const std::string&)>& on_event,
                          std::chrono::seconds timeout, const std::atomic<bool>* cancel) {
  if (auto wait = limiter_.reserve(RateLimiter::Clock::now()); wait.count() > 0) {
    ++throttled_;
    std::this_thread::sleep_for(wait);
  }
  const std::string bearer = token();
  ++requests_;
  // A connection of its own (never pooled: the stream stays open).
  auto conn = connectTo(impl_->tls.get(), cfg_, timeout);
  if (!conn) return conn.error();
  auto& io = (*conn)->io;
  auto result = onConn(**conn, cfg_, timeout, [&](auto& stream, auto arm) -> Result<int> {
    http::request<http::empty_body> req{http::verb::get, path, 11};
    prepare<decltype(stream)>(req, cfg_, bearer);
    arm();
    check(await(io, [&](auto h) { http::async_write(stream, req, h); }));
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    arm();
    check(await(io, [&](auto h) { http::async_read_header(stream, buf, parser, h); }));
    const int status = static_cast<int>(parser.get().result_int());
    std::string pending;
    bool stop = false;
    // Polls `cancel` while the read waits; a cancelled read ends the watch.
    boost::asio::steady_timer poll(io);
    std::function<void()> tick = [&] {
      poll.expires_after(std::chrono::milliseconds(100));
      poll.async_wait([&](boost::system::error_code ec) {
        if (ec) return;  // the timer went away with the watch
        if (cancel->load())
          beast::get_lowest_layer(stream).cancel();
        else
          tick();
      });
    };
    if (cancel) tick();
    char chunk[16384];
    while (!parser.is_done() && !stop) {
      if (cancel && cancel->load()) break;
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      arm();  // the watch's idle timeout: bookmarks and events keep it alive
      // read_some: deliver each event as it arrives (a plain read would
      // wait until the chunk buffer is full or the stream ends).
      auto ec = await(io, [&](auto h) { http::async_read_some(stream, buf, parser, h); });
      if (ec && ec != http::error::need_buffer) {
        if (ec == http::error::end_of_stream || ec == boost::asio::error::eof) break;
        if (cancel && cancel->load()) break;
        throw boost::system::system_error(ec);
      }
      pending.append(chunk, sizeof chunk - parser.get().body().size);
      if (pending.size() > opts_.max_body)
        throw boost::system::system_error(make_error_code(http::error::body_limit));
      size_t pos;
      while (!stop && (pos = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, pos);
        pending.erase(0, pos + 1);
        if (!line.empty()) stop = !on_event(line);
      }
    }
    if (!stop && !pending.empty()) on_event(pending);
    return status;
  });
  if (result) {
    noteDenied(*result, "GET", path);
    if (*result == 401) token(/*force_reread=*/true);  // the next watch uses a rotated token
  }
  return result;
}

}  // namespace nsegress::kube
