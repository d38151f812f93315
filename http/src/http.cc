#include "nsegress/http/http.h"
#include "nsegress/common/encoding.h"
#include "nsegress/common/json.h"
#include "nsegress/http/auth.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <sstream>

namespace nsegress::http {

namespace {
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::map<std::string, std::string> parseQuery(const std::string& q) {
  std::map<std::string, std::string> out;
  std::istringstream in(q);
  std::string kv;
  while (std::getline(in, kv, '&')) {
    auto eq = kv.find('=');
    std::string k = eq == std::string::npos ? kv : kv.substr(0, eq);
    std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    out.emplace(percentDecode(k), percentDecode(v));  // the first value wins
  }
  return out;
}
}  // namespace

void Headers::set(std::string name, std::string value) {
  std::erase_if(items_, [&](const auto& kv) { return iequals(kv.first, name); });
  items_.emplace_back(std::move(name), std::move(value));
}

std::optional<std::string> Headers::get(std::string_view name) const {
  for (const auto& [k, v] : items_)
    if (iequals(k, name)) return v;
  return std::nullopt;
}

HttpRequest HttpRequest::make(std::string method, std::string target) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  const auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = parseQuery(r.target.substr(q + 1));
  return r;
}

HttpResponse jsonError(int status, const std::string& message) {
  return {status, "application/json", {}, dumpJson(nlohmann::json{{"error", message}}, 2) + "\n"};
}

bool Principal::allowsPool(const std::string& pool) const {
  return pools.empty() || std::find(pools.begin(), pools.end(), pool) != pools.end();
}

bool isLoopbackPeer(const std::string& peer) {
  return peer.rfind("127.", 0) == 0 || peer == "::1" || peer.rfind("::ffff:127.", 0) == 0;
}

bool isLoopbackHost(std::string host) {
  if (host.size() > 64) return false;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string::npos) return false;
    const std::string addr = host.substr(1, close - 1);
    return addr == "::1";
  }
  if (auto colon = host.find(':'); colon != std::string::npos) host.resize(colon);
  return host == "localhost" || host.rfind("127.", 0) == 0;
}

void Router::add(std::string method, std::string pattern, Handler h, Cost cost,
                 std::optional<Access> access) {
  const Access a = access.value_or(method == "GET" ? Access::kRead : Access::kWrite);
  routes_.push_back(Route{std::move(method), std::move(pattern), cost, a, std::move(h)});
}

bool Router::authenticates() const {
  return credentials_ && credentials_() != nullptr;
}

std::optional<HttpResponse> Router::authorize(const Route& route, HttpRequest& req) const {
  if (route.access == Access::kOpen) return std::nullopt;
  const auto creds = credentials_ ? credentials_() : nullptr;
  if (!creds) {
    if (route.access != Access::kWrite) return std::nullopt;
    // No credentials: a state change only from this host, named as such,
    // and not from a browser page (no Origin).
    if (!isLoopbackPeer(req.peer))
      return jsonError(403, "a change is accepted from this host only (or configure --auth-file)");
    if (!isLoopbackHost(req.headers.get("host").value_or("")))
      return jsonError(403, "a change needs a Host header naming localhost");
    if (req.headers.get("origin")) return jsonError(403, "a change is not accepted from a browser");
    return std::nullopt;
  }
  req.principal = creds->authenticate(req);
  if (!req.principal) {
    // Nothing else: no hint which part was wrong.
    HttpResponse r = jsonError(401, "unauthorized");
    r.headers.add("WWW-Authenticate", "Basic realm=\"nsegress\", charset=\"UTF-8\"");
    return r;
  }
  if (route.access == Access::kWrite) {
    if (!req.principal->write) return jsonError(403, req.principal->name + " has no write role");
    if (req.headers.get("origin")) return jsonError(403, "a change is not accepted from a browser");
  }
  // A pool-limited principal reads its pools' feeds only: the read API
  // would show every pool.
  if (route.access == Access::kRead && !req.principal->pools.empty())
    return jsonError(403, req.principal->name + " may read the feeds of its pools only");
  return std::nullopt;
}

Router::Match Router::match(const std::string& method, const std::string& path) const {
  Match m;
  for (const auto& r : routes_) {
    std::string rest;
    if (!r.pattern.empty() && r.pattern.back() == '*') {
      const std::string_view prefix(r.pattern.data(), r.pattern.size() - 1);
      if (!path.starts_with(prefix)) continue;
      rest = path.substr(prefix.size());
    } else if (path != r.pattern) {
      continue;
    }
    if (r.method == method || (r.method == "GET" && method == "HEAD")) {
      m.route = &r;
      m.status = 200;
      m.rest = std::move(rest);
      return m;
    }
    m.status = 405;  // the path exists, not for this method
  }
  return m;
}

HttpResponse Router::dispatch(HttpRequest req) const {
  if (req.target.empty() || req.target[0] != '/' || req.target.size() > 2048)
    return jsonError(400, "malformed request target");
  auto m = match(req.method, req.path);
  if (!m.route)
    return m.status == 405 ? jsonError(405, "method " + req.method + " not allowed on " + req.path)
                           : jsonError(404, "no route " + req.path);
  req.rest = std::move(m.rest);
  if (auto refused = authorize(*m.route, req)) return *refused;
  return m.route->handler(req);
}

}  // namespace nsegress::http
