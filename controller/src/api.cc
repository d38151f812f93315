#include "nsegress/controller/api.h"

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

namespace nsegress::controller {

using nlohmann::json;

std::optional<Seconds> parseTime(const std::string& s) {
  if (s.empty()) return std::nullopt;
  if (s.find('-') == std::string::npos) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
  }
  std::tm tm{};
  std::istringstream in(s);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail()) return std::nullopt;
  return static_cast<Seconds>(timegm(&tm));
}

namespace {

HttpResponse jsonResp(const json& j, int status = 200) {
  return {status, "application/json", j.dump(2) + "\n"};
}
HttpResponse error(int status, const std::string& msg) {
  return jsonResp(json{{"error", msg}}, status);
}

json statusJson(const NamespaceStatus& s, const View& v) {
  json j{{"namespace", s.ns},    {"phase", toString(s.phase)},
         {"request", s.request}, {"pool", s.pool},
         {"node", s.node},       {"reason", s.reason}};
  j["ip"] = s.ip ? json(s.ip->str()) : json(nullptr);
  if (s.ip) {
    auto it = v.ledger.find(*s.ip);
    if (it != v.ledger.end()) j["since"] = formatTime(it->second.assigned_at);
  }
  return j;
}

json recordJson(const AddressRecord& r) {
  return json{{"ip", r.ip.str()},
              {"pool", r.pool},
              {"state", toString(r.state)},
              {"namespace", r.ns},
              {"node", r.node},
              {"assignedAt", formatTime(r.assigned_at)},
              {"releasedAt", formatTime(r.released_at)},
              {"quarantineUntil", formatTime(r.quarantine_until)}};
}

std::map<std::string, std::string> query(const std::string& q) {
  std::map<std::string, std::string> out;
  std::istringstream in(q);
  std::string kv;
  while (std::getline(in, kv, '&')) {
    auto eq = kv.find('=');
    if (eq == std::string::npos)
      out[kv] = "";
    else
      out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

bool safePathPart(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'))
      return false;
  return true;
}

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

}  // namespace

std::string explain(const View& v, const std::string& ns) {
  auto nit = v.namespaces.find(ns);
  if (nit == v.namespaces.end()) return "namespace " + ns + " does not exist";
  auto sit = v.statuses.find(ns);
  if (sit == v.statuses.end())
    return "namespace " + ns + " does not ask for an egress IP: annotate it with " +
           kPoolAnnotation + ": <pool> or " + kIpAnnotation + ": <address>";
  const auto& s = sit->second;
  std::string out;
  switch (s.phase) {
    case Phase::kAssigned:
      out = ns + " leaves as " + s.ip->str() + " (pool " + s.pool + ")" +
            (s.node.empty() ? "" : " through gateway " + s.node);
      if (!s.reason.empty()) out += ". Warning: " + s.reason;
      return out;
    case Phase::kPending:
      return ns + " has no egress IP yet (" + s.request + "): " + s.reason +
             ". It is retried on every change; its pods are held fail-closed meanwhile.";
    case Phase::kRefused:
      return ns + " has no egress IP: its request (" +
             (s.request.empty() ? "annotation" : s.request) + ") is refused: " + s.reason +
             ". Fix the annotation; its pods are held fail-closed meanwhile.";
  }
  return out;
}

HttpResponse handleRequest(const ApiContext& ctx, const std::string& method,
                           const std::string& target) {
  if (target.empty() || target[0] != '/' || target.size() > 2048)
    return error(400, "malformed request target");
  if (method != "GET" && method != "HEAD") return error(405, "only GET is supported");
  const auto qpos = target.find('?');
  const std::string path = target.substr(0, qpos);
  const auto q = query(qpos == std::string::npos ? "" : target.substr(qpos + 1));
  const View& v = *ctx.view;

  if (path == "/healthz") return {200, "text/plain", "ok\n"};
  if (path == "/metrics")
    return {200, "text/plain; version=0.0.4", ctx.metrics_text ? ctx.metrics_text() : ""};
  if (!ctx.not_serving.empty()) return error(503, ctx.not_serving);
  if (path == "/readyz")
    return v.reconciles > 0 ? HttpResponse{200, "text/plain", "ok\n"}
                            : error(503, "no reconcile yet");
  if (path == "/api/v1/namespaces") {
    json arr = json::array();
    for (const auto& [n, s] : v.statuses) arr.push_back(statusJson(s, v));
    return jsonResp(arr);
  }
  if (path.rfind("/api/v1/namespaces/", 0) == 0) {
    const std::string ns = path.substr(19);
    if (!safePathPart(ns)) return error(400, "malformed namespace name");
    if (!v.namespaces.count(ns)) return error(404, "namespace " + ns + " does not exist");
    json j = v.statuses.count(ns)
                 ? statusJson(v.statuses.at(ns), v)
                 : json{{"namespace", ns}, {"phase", "NotRequested"}, {"ip", nullptr}};
    j["explain"] = explain(v, ns);
    return jsonResp(j);
  }
  if (path == "/api/v1/addresses") {
    json arr = json::array();
    for (const auto& [ip, r] : v.ledger) arr.push_back(recordJson(r));
    return jsonResp(arr);
  }
  if (path == "/api/v1/errors") {
    json arr = json::array();
    for (const auto& e : v.errors) arr.push_back(json{{"file", e.file}, {"message", e.message}});
    return jsonResp(arr);
  }
  if (path == "/api/v1/who-had") {
    auto ip = IpAddress::parse(q.count("ip") ? q.at("ip") : "");
    if (!ip) return error(400, "query parameter ip: not an IP address");
    Seconds at = v.at;
    if (q.count("at")) {
      auto t = parseTime(q.at("at"));
      if (!t) return error(400, "query parameter at: not a Unix time or RFC 3339 UTC time");
      at = *t;
    }
    if (!ctx.store) return error(503, "no audit log");
    std::vector<AuditEvent> history;
    for (int64_t since = 0;;) {
      auto page = ctx.store->audit(since, 10000);
      if (!page) return error(500, page.error().message);
      if (page->empty()) break;
      for (const auto& e : *page) history.push_back(e.event);
      since = page->back().id;
    }
    auto who = whoHad(history, *ip, at);
    return jsonResp(json{{"ip", ip->str()},
                         {"at", formatTime(at)},
                         {"namespace", who ? json(*who) : json(nullptr)}});
  }
  if (path.rfind("/feeds/edl/", 0) == 0) {
    const std::string pool = path.substr(11);
    if (!safePathPart(pool)) return error(400, "malformed pool name");
    if (!v.pools.count(pool)) {
      bool in_ledger = false;
      for (const auto& [ip, r] : v.ledger) in_ledger |= r.pool == pool;
      if (!in_ledger) return error(404, "no pool " + pool);
    }
    std::string body;
    for (const auto& [ip, r] : v.ledger)
      if (r.pool == pool && r.state == AddressState::kAssigned) body += ip.str() + "\n";
    return {200, "text/plain", body};
  }
  if (path == "/feeds/assignments.json") {
    json arr = json::array();
    for (const auto& [ip, r] : v.ledger)
      if (r.state == AddressState::kAssigned)
        arr.push_back(json{{"namespace", r.ns},
                           {"ip", ip.str()},
                           {"pool", r.pool},
                           {"since", formatTime(r.assigned_at)}});
    return jsonResp(arr);
  }
  if (path == "/feeds/assignments.csv") {
    std::string body = "namespace,ip,pool,since\n";
    for (const auto& [ip, r] : v.ledger)
      if (r.state == AddressState::kAssigned)
        body += csvField(r.ns) + "," + ip.str() + "," + csvField(r.pool) + "," +
                formatTime(r.assigned_at) + "\n";
    return {200, "text/csv", body};
  }
  if (path == "/audit") {
    if (!ctx.store) return error(503, "no audit log");
    int64_t since = 0;
    size_t limit = 1000;
    if (q.count("since")) {
      auto& s = q.at("since");
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), since);
      if (ec != std::errc() || p != s.data() + s.size() || since < 0)
        return error(400, "query parameter since: not a non-negative integer");
    }
    if (q.count("limit")) {
      auto& s = q.at("limit");
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), limit);
      if (ec != std::errc() || p != s.data() + s.size() || limit == 0 || limit > 10000)
        return error(400, "query parameter limit: must be 1..10000");
    }
    auto page = ctx.store->audit(since, limit);
    if (!page) return error(500, page.error().message);
    std::string body;
    for (const auto& e : *page)
      body += json{{"id", e.id},           {"at", formatTime(e.event.at)},
                   {"kind", e.event.kind}, {"namespace", e.event.ns},
                   {"ip", e.event.ip},     {"pool", e.event.pool},
                   {"node", e.event.node}, {"message", e.event.message}}
                  .dump() +
              "\n";
    return {200, "application/x-ndjson", body};
  }
  return error(404, "no route " + path);
}

}  // namespace nsegress::controller
