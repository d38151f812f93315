// The HTTP seam: requests and responses with headers both ways, and a route
// table. Independent of sockets and of TLS: the server (http_server.h) turns
// bytes into an HttpRequest and an HttpResponse into bytes, the handlers see
// only these values, so every route is unit-testable without a socket.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nsegress::controller {

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
  struct Route {
    std::string method;
    std::string pattern;  // exact path, or a prefix ending in '*'
    Cost cost;
    Handler handler;
  };
  // GET routes also answer HEAD (the server drops the body).
  void add(std::string method, std::string pattern, Handler h, Cost cost = Cost::kFast);
  void get(std::string pattern, Handler h, Cost cost = Cost::kFast) {
    add("GET", std::move(pattern), std::move(h), cost);
  }

  struct Match {
    const Route* route = nullptr;  // null: no route (`status` says 404 or 405)
    int status = 404;
    std::string rest;
  };
  Match match(const std::string& method, const std::string& path) const;
  // Synchronous dispatch (tests, and the server's fast path): 400 for a
  // malformed target, 404/405 for no route.
  HttpResponse dispatch(HttpRequest req) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

HttpResponse jsonError(int status, const std::string& message);

}  // namespace nsegress::controller
