// The HTTP seam: requests and responses with headers both ways, and a route
// table with an access level per route. Independent of sockets and of TLS:
// the server (server.h) turns bytes into an HttpRequest and an HttpResponse
// into bytes, the handlers see only these values, so every route and every
// credential check is unit-testable without a socket.
#pragma once

#include <memory>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nsegress::http {

class Credentials;  // auth.h

// Who made a request, once its credentials were checked (auth.h).
struct Principal {
  std::string name;
  bool write = false;              // the write role: state changes (ack, drain, ...)
  std::vector<std::string> pools;  // empty: every pool; else feeds of these pools only
  bool allowsPool(const std::string& pool) const;
};

// Header names compare case-insensitively (RFC 9110); order is kept.
class Headers {
 public:
  void add(std::string name, std::string value) {
    items_.emplace_back(std::move(name), std::move(value));
  }
  // Replaces every field of that name.
  void set(std::string name, std::string value);
  std::optional<std::string> get(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct HttpRequest {
  std::string method;                        // "GET"
  std::string target;                        // as sent: path and query
  std::string path;                          // target without the query
  std::map<std::string, std::string> query;  // first value of each parameter
  Headers headers;
  std::string body;
  std::string peer;  // remote address (logs, limits)
  bool tls = false;  // arrived over the TLS listener
  // The verified client certificate's subject CN (mTLS), empty without one.
  std::string client_cert_cn;
  // Set by Router::dispatch when credentials are configured and the request
  // presented valid ones.
  std::optional<Principal> principal;
  // The part of the path a prefix route matched with its '*'.
  std::string rest;

  // A request from a method and a target (tests, the server).
  static HttpRequest make(std::string method, std::string target);
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  Headers headers;  // besides Content-Type and Content-Length
  std::string body;
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

class Router {
 public:
  // Where a handler may run: kFast on the I/O thread that serves the feeds
  // (bounded work on in-memory snapshots); kSlow on a worker, never
  // delaying a feed (anything that reads storage or scans history).
  enum class Cost { kFast, kSlow };
  // Who may call a route. Without credentials configured: kOpen, kFeed and
  // kRead answer anyone; kWrite only a client on this host (loopback peer,
  // a Host header naming localhost, no Origin header: no DNS rebinding or
  // cross-site form from a browser). With credentials (setCredentials): kFeed
  // and kRead need a valid principal (a pool-limited one: feeds of its pools
  // only, the handler checks), kWrite a principal with the write role, from
  // anywhere; kOpen stays open (health checks).
  enum class Access { kOpen, kFeed, kRead, kWrite };
  struct Route {
    std::string method;
    std::string pattern;  // exact path, or a prefix ending in '*'
    Cost cost;
    Access access;
    Handler handler;
  };
  // GET routes also answer HEAD (the server drops the body). A POST (any
  // method but GET) is kWrite by default, a GET kRead.
  void add(std::string method, std::string pattern, Handler h, Cost cost = Cost::kFast,
           std::optional<Access> access = std::nullopt);
  void get(std::string pattern, Handler h, Cost cost = Cost::kFast, Access access = Access::kRead) {
    add("GET", std::move(pattern), std::move(h), cost, access);
  }
  // The credentials in force, read at every request (so a reloaded file
  // takes effect at once); returning null means none are configured.
  using CredentialsSource = std::function<std::shared_ptr<const Credentials>()>;
  void setCredentials(CredentialsSource c) { credentials_ = std::move(c); }
  // Whether credentials are configured now.
  bool authenticates() const;

  struct Match {
    const Route* route = nullptr;  // null: no route (`status` says 404 or 405)
    int status = 404;
    std::string rest;
  };
  Match match(const std::string& method, const std::string& path) const;
  // Synchronous dispatch (tests, and the server's fast path): 400 for a
  // malformed target, 404/405 for no route, 401/403 for credentials.
  HttpResponse dispatch(HttpRequest req) const;
  // The access check alone: an error response, or nullopt to go on (sets
  // req.principal).
  std::optional<HttpResponse> authorize(const Route& route, HttpRequest& req) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
  CredentialsSource credentials_;
};

// A client on this host, by its peer address.
bool isLoopbackPeer(const std::string& peer);
// A Host header naming this host ("localhost", "127.0.0.1", "[::1]", each
// with an optional port).
bool isLoopbackHost(std::string host);

HttpResponse jsonError(int status, const std::string& message);

}  // namespace nsegress::http
