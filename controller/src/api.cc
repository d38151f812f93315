#include "nsegress/controller/api.h"
#include "nsegress/common/desired_state.h"
#include "nsegress/common/json.h"
#include "nsegress/controller/feeds.h"
#include "nsegress/controller/port_blocks.h"
#include "nsegress/controller/web.h"

#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>
#include <sstream>

namespace nsegress::controller {

using nlohmann::json;

std::optional<Seconds> parseTime(const std::string& s) {
  if (s.empty() || s.size() > 64) return std::nullopt;
  std::optional<Seconds> t;
  if (s.find('-') == std::string::npos) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    t = v;
  } else {
    t = parseRfc3339(s);
  }
  // Only times nsegress can have recorded: 1970..9999.
  if (!t || *t < 0 || *t > kMaxTime) return std::nullopt;
  return t;
}

namespace {

HttpResponse jsonResp(const json& j, int status = 200) {
  return {status, "application/json", {}, dumpJson(j, 2) + "\n"};
}
HttpResponse error(int status, const std::string& msg) {
  return jsonError(status, msg);
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
              {"quarantineUntil", formatTime(r.quarantine_until)},
              {"usableAt", formatTime(r.usable_at)}};
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
             ". Its pods are held fail-closed until the request can be met.";
  }
  return out;
}

ApiContext ApiContext::fixed(std::shared_ptr<const View> v, LedgerStore* store,
                             std::function<std::string()> metrics, std::string not_serving) {
  return ApiContext{[v] { return v; }, store, std::move(metrics),
                    [ns = std::move(not_serving)] { return ns; }};
}

namespace {

// Routes that hand out data: a replica that is not serving answers 503.
Handler data(const ApiContext& ctx,
             std::function<HttpResponse(const HttpRequest&, const View&)> f) {
  return [&ctx, f = std::move(f)](const HttpRequest& r) {
    const std::string why = ctx.not_serving ? ctx.not_serving() : "";
    if (!why.empty()) return error(503, why);
    const auto v = ctx.view();
    return f(r, *v);
  };
}

HttpResponse namespaces(const HttpRequest&, const View& v) {
  json arr = json::array();
  for (const auto& [n, s] : v.statuses) arr.push_back(statusJson(s, v));
  return jsonResp(arr);
}

HttpResponse oneNamespace(const HttpRequest& r, const View& v) {
  const std::string& ns = r.rest;
  if (!safePathPart(ns)) return error(400, "malformed namespace name");
  if (!v.namespaces.count(ns)) return error(404, "namespace " + ns + " does not exist");
  json j = v.statuses.count(ns)
               ? statusJson(v.statuses.at(ns), v)
               : json{{"namespace", ns}, {"phase", "NotRequested"}, {"ip", nullptr}};
  j["explain"] = explain(v, ns);
  return jsonResp(j);
}

HttpResponse addresses(const HttpRequest&, const View& v) {
  json arr = json::array();
  for (const auto& [ip, r] : v.ledger) arr.push_back(recordJson(r));
  return jsonResp(arr);
}

HttpResponse errors(const HttpRequest&, const View& v) {
  json arr = json::array();
  for (const auto& e : v.errors) arr.push_back(json{{"file", e.file}, {"message", e.message}});
  return jsonResp(arr);
}

// A request whose query holds anything but `names`, or one of them twice:
// 400. (The parsed query keeps a parameter's first value; acting on one of
// two would be a guess.)
std::optional<HttpResponse> onlyParams(const HttpRequest& r,
                                       std::initializer_list<std::string_view> names) {
  const auto q = r.target.find('?');
  if (q == std::string::npos) return std::nullopt;
  std::string list;
  for (auto n : names) list += (list.empty() ? "" : ", ") + std::string(n);
  std::map<std::string, int> seen;
  const std::string query = r.target.substr(q + 1);
  for (size_t i = 0; i <= query.size();) {
    const size_t amp = std::min(query.find('&', i), query.size());
    const std::string kv = query.substr(i, amp - i);
    const std::string key = kv.substr(0, kv.find('='));
    i = amp + 1;
    if (kv.empty()) continue;
    if (std::find(names.begin(), names.end(), key) == names.end())
      return error(400, "query parameter " + key.substr(0, 64) + ": unknown (only " + list + ")");
    if (++seen[key] > 1) return error(400, "query parameter " + key + ": given more than once");
  }
  return std::nullopt;
}
std::optional<HttpResponse> onlyParam(const HttpRequest& r, const std::string& name) {
  return onlyParams(r, {name});
}

// The query's `at` (Unix or RFC 3339 UTC time), else the view's time.
Result<Seconds> queryTime(const HttpRequest& r, const View& v) {
  auto it = r.query.find("at");
  if (it == r.query.end()) return v.at;
  auto t = parseTime(it->second);
  if (!t) return makeError(EINVAL, "query parameter at: not a Unix time or RFC 3339 UTC time");
  return *t;
}

// /feeds/<format>/<pool>[.sha256][?labels=k=v,…] (feeds.h). A pool whose
// own name ends in .sha256 is served as itself; its checksum is
// <pool>.sha256.sha256.
Handler feedRoute(const ApiContext& ctx, FeedFormat format) {
  return [&ctx, format](const HttpRequest& r) {
    const std::string why = ctx.not_serving ? ctx.not_serving() : "";
    if (!why.empty()) return error(503, why);
    const auto view = ctx.view();
    const View& v = *view;
    // Only `labels`, at most once: a typo or a second selection must not
    // silently widen the list.
    if (auto bad = onlyParam(r, "labels")) return *bad;
    std::string pool = r.rest;
    bool checksum = false;
    if (!v.pools.count(pool) && pool.size() > 7 &&
        pool.compare(pool.size() - 7, 7, ".sha256") == 0) {
      checksum = true;
      pool.resize(pool.size() - 7);
    }
    if (!safePathPart(pool)) return error(400, "malformed pool name");
    if (r.principal && !r.principal->allowsPool(pool))
      return error(403, r.principal->name + " may not read pool " + pool);
    auto labels = r.query.find("labels");
    const auto selection = labels == r.query.end() ? std::nullopt : std::optional(labels->second);
    // One rendering per view, format, pool and selection (the checksum too).
    const std::string key = std::to_string(static_cast<int>(format)) + (checksum ? "s|" : "|") +
                            pool + "|" + (selection ? "=" + *selection : "");
    auto f = ctx.feed_cache->get(view, key, [&]() -> Result<Feed> {
      auto feed = renderFeed(v, pool, selection, format);
      if (!feed || !checksum) return feed;
      feed->body = sha256Hex(feed->body);
      feed->content_type = "text/plain";
      feed->etag = "\"" + feed->body.substr(0, 32) + "\"";
      return feed;
    });
    if (!f) return error(f.error().code == ENOENT ? 404 : 400, f.error().message);
    return conditionalFeed(r, **f, v.at);
  };
}

// What waits on the firewall side: released addresses until their removal
// is acknowledged, new ones until their onboarding ends.
HttpResponse pending(const HttpRequest&, const View& v) {
  json cleanup = json::array(), onboarding = json::array();
  for (const auto& [ip, r] : v.ledger) {
    if (r.state == AddressState::kPendingFirewallCleanup)
      cleanup.push_back(json{{"ip", ip.str()},
                             {"pool", r.pool},
                             {"namespace", r.ns},
                             {"releasedAt", formatTime(r.released_at)},
                             {"waitingSeconds", std::max<Seconds>(0, v.at - r.released_at)}});
    else if (r.state == AddressState::kAssigned && !r.usable(v.at))
      onboarding.push_back(json{{"ip", ip.str()},
                                {"pool", r.pool},
                                {"namespace", r.ns},
                                {"publishedAt", formatTime(r.assigned_at)},
                                {"usableAt", formatTime(r.usable_at)}});
  }
  return jsonResp(json{{"firewallCleanup", cleanup}, {"onboarding", onboarding}});
}

HttpResponse assignmentsJson(const HttpRequest&, const View& v) {
  json arr = json::array();
  for (const auto& [ip, r] : v.ledger)
    if (r.state == AddressState::kAssigned)
      arr.push_back(json{{"namespace", r.ns},
                         {"ip", ip.str()},
                         {"pool", r.pool},
                         {"since", formatTime(r.assigned_at)}});
  return jsonResp(arr);
}

HttpResponse assignmentsCsv(const HttpRequest&, const View& v) {
  std::string body = "namespace,ip,pool,since\n";
  for (const auto& [ip, r] : v.ledger)
    if (r.state == AddressState::kAssigned)
      body += csvField(r.ns) + "," + ip.str() + "," + csvField(r.pool) + "," +
              formatTime(r.assigned_at) + "\n";
  return {200, "text/csv", {}, body};
}

HttpResponse whoHadRoute(const ApiContext& ctx, const HttpRequest& r, const View& v) {
  auto ip = IpAddress::parse(r.query.count("ip") ? r.query.at("ip") : "");
  if (!ip) return error(400, "query parameter ip: not an IP address");
  auto t = queryTime(r, v);
  if (!t) return error(400, t.error().message);
  const Seconds at = *t;
  if (!ctx.store) return error(503, "no audit log");
  auto history = ctx.store->history(*ip);  // this address's events only (indexed)
  if (!history) return error(500, history.error().message);
  auto who = whoHad(*history, *ip, at);
  return jsonResp(json{
      {"ip", ip->str()}, {"at", formatTime(at)}, {"namespace", who ? json(*who) : json(nullptr)}});
}

// "Who was behind ADDRESS:PORT at T?": the pod whose port block covered
// the port then (attribution by port), else the namespace that held the
// address (who-had), saying which of the two answered.
HttpResponse whoRoute(const ApiContext& ctx, const HttpRequest& r, const View& v) {
  if (auto bad = onlyParams(r, {"addr", "at"})) return *bad;
  auto a = r.query.find("addr");
  if (a == r.query.end()) return error(400, "query parameter addr: required (ADDRESS:PORT)");
  auto ap = parseIpPort(a->second);
  if (!ap)
    return error(400,
                 "query parameter addr: not an address and port like 203.0.113.10:41234 "
                 "or [fd00::1]:41234");
  auto t = queryTime(r, v);
  if (!t) return error(400, t.error().message);
  const Seconds at = *t;
  if (!ctx.store) return error(503, "no ledger");
  json out{{"address", ap->ip.str()}, {"port", ap->port}, {"at", formatTime(at)}};
  auto blocks = ctx.store->blocksCovering(ap->ip, ap->port, at);
  if (!blocks) return error(500, blocks.error().message);
  if (auto b = blockAt(*blocks, ap->ip, ap->port, at)) {
    out["answer"] = "pod";
    out["namespace"] = b->ns;
    out["pod"] = b->pod;
    out["podIP"] = b->pod_ip.str();
    out["ports"] = std::to_string(b->first) + "-" + std::to_string(b->last);
    out["heldFrom"] = formatTime(b->from);
    out["heldTo"] = b->held() ? json(nullptr) : json(formatTime(b->to));
    // The ledger keeps whole seconds: a block handed over within the second
    // asked about had two holders in it. Both are named, not one guessed.
    if (b->from == at) {
      auto before = ctx.store->blocksCovering(ap->ip, ap->port, at - 1);
      if (before)
        if (auto p = blockAt(*before, ap->ip, ap->port, at - 1); p && p->to == at)
          out["orWithinThatSecond"] = {{"namespace", p->ns},
                                       {"pod", p->pod},
                                       {"podIP", p->pod_ip.str()},
                                       {"heldTo", formatTime(p->to)},
                                       {"note",
                                        "the block changed hands within this second (the ledger "
                                        "keeps whole seconds): either pod"}};
    }
    return jsonResp(out);
  }
  auto history = ctx.store->history(ap->ip);
  if (!history) return error(500, history.error().message);
  auto who = whoHad(*history, ap->ip, at);
  out["answer"] = who ? "namespace" : "nobody";
  out["namespace"] = who ? json(*who) : json(nullptr);
  out["pod"] = nullptr;
  out["reason"] = who ? "no port block held this port then (its pool gave no port blocks, or the "
                        "port is outside every block): only the namespace is known"
                      : "no namespace held this address then";
  return jsonResp(out);
}

// The port blocks held now (attribution by port).
HttpResponse blocksRoute(const HttpRequest&, const View& v) {
  json held = json::array();
  for (const auto& b : v.blocks)
    held.push_back({{"address", b.egress.str()},
                    {"ports", std::to_string(b.first) + "-" + std::to_string(b.last)},
                    {"namespace", b.ns},
                    {"pod", b.pod},
                    {"podIP", b.pod_ip.str()},
                    {"heldFrom", formatTime(b.from)}});
  json pools = json::object();
  for (const auto& [name, u] : v.block_usage)
    pools[name] = {
        {"blocksPerAddress", u.per_address}, {"held", u.held}, {"podsWithoutBlock", u.starved}};
  return jsonResp(json{{"held", held}, {"pools", pools}, {"podsWithoutBlock", v.starved}});
}

HttpResponse auditRoute(const ApiContext& ctx, const HttpRequest& r) {
  if (!ctx.store) return error(503, "no audit log");
  int64_t since = 0;
  size_t limit = 1000;
  if (r.query.count("since")) {
    auto& s = r.query.at("since");
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), since);
    if (ec != std::errc() || p != s.data() + s.size() || since < 0)
      return error(400, "query parameter since: not a non-negative integer");
  }
  if (r.query.count("limit")) {
    auto& s = r.query.at("limit");
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), limit);
    if (ec != std::errc() || p != s.data() + s.size() || limit == 0 || limit > 10000)
      return error(400, "query parameter limit: must be 1..10000");
  }
  auto page = ctx.store->audit(since, limit);
  if (!page) return error(500, page.error().message);
  std::string body;
  for (const auto& e : *page)
    body += dumpJson(json{{"id", e.id},
                          {"at", formatTime(e.event.at)},
                          {"kind", e.event.kind},
                          {"namespace", e.event.ns},
                          {"ip", e.event.ip},
                          {"pool", e.event.pool},
                          {"node", e.event.node},
                          {"message", e.event.message}}) +
            "\n";
  return {200, "application/x-ndjson", {}, body};
}

}  // namespace

namespace {
// /healthz, and /metrics with the given access.
Router healthAndMetrics(const ApiContext& ctx, bool with_metrics, Router::Access metrics_access) {
  Router r;
  r.get(
      "/healthz",
      [](const HttpRequest&) {
        return HttpResponse{200, "text/plain", {}, "ok\n"};
      },
      Router::Cost::kFast, Router::Access::kOpen);
  if (with_metrics)
    r.get(
        "/metrics",
        [&ctx](const HttpRequest&) {
          return HttpResponse{
              200, "text/plain; version=0.0.4", {}, ctx.metrics_text ? ctx.metrics_text() : ""};
        },
        Router::Cost::kFast, metrics_access);
  return r;
}
}  // namespace

Router metricsRouter(const ApiContext& ctx, bool with_metrics) {
  // A listener of its own: open, as Prometheus scrapes it.
  return healthAndMetrics(ctx, with_metrics, Router::Access::kOpen);
}

Router apiRouter(const ApiContext& ctx, bool with_metrics) {
  using Cost = Router::Cost;
  using Access = Router::Access;
  // On the API's listener, metrics need credentials when they are
  // configured (they name namespaces and pools).
  Router r = healthAndMetrics(ctx, with_metrics, Access::kRead);
  r.get("/readyz",
        data(ctx,
             [](const HttpRequest&, const View& v) {
               if (!v.not_ready.empty()) return error(503, v.not_ready);
               if (v.hold) return error(503, "held: " + v.hold->reason);
               return v.reconciles > 0 ? HttpResponse{200, "text/plain", {}, "ok\n"}
                                       : error(503, "no reconcile yet");
             }),
        Cost::kFast, Access::kOpen);
  r.get("/api/v1/namespaces", data(ctx, namespaces));
  r.get("/api/v1/namespaces/*", data(ctx, oneNamespace));
  r.get("/api/v1/addresses", data(ctx, addresses));
  r.get("/api/v1/errors", data(ctx, errors));
  r.get("/api/v1/who-had",
        data(ctx, [&ctx](const HttpRequest& q, const View& v) { return whoHadRoute(ctx, q, v); }),
        Cost::kSlow);
  r.get("/api/v1/who",
        data(ctx, [&ctx](const HttpRequest& q, const View& v) { return whoRoute(ctx, q, v); }),
        Cost::kSlow);
  r.get("/api/v1/port-blocks", data(ctx, blocksRoute));
  r.get("/api/v1/hold", data(ctx, [](const HttpRequest&, const View& v) {
          if (!v.hold) return jsonResp(nullptr);
          return jsonResp(json{{"reason", v.hold->reason},
                               {"since", formatTime(v.hold->since)},
                               {"namespaces", v.hold->namespaces},
                               {"token", v.hold->token}});
        }));
  r.add("POST", "/api/v1/hold/confirm", [&ctx](const HttpRequest& q) {
    // A change (Access::kWrite): a write role, or without credentials this
    // host only (standalone: nsegressctl on the controller's machine;
    // cluster: kubectl port-forward, which arrives on the pod's loopback).
    if (!ctx.confirm_release) return error(501, "confirmation is not available here");
    auto t = q.query.find("token");
    if (t == q.query.end() || t->second.empty() || t->second.size() > 64)
      return error(400, "query parameter token: required (see GET /api/v1/hold)");
    if (auto s = ctx.confirm_release(t->second); !s)
      return error(s.error().code == ENOENT ? 404 : 409, s.error().message);
    return jsonResp(json{{"confirmed", t->second}});
  });
  r.add("POST", "/api/v1/drain", [&ctx](const HttpRequest& q) {
    if (!ctx.drain) return error(501, "drain is not available here");
    auto n = q.query.find("node");
    if (n == q.query.end() || !isDnsSubdomain(n->second))
      return error(400, "query parameter node: a node name is required");
    auto u = q.query.find("undo");
    const bool undo = u != q.query.end() && u->second == "1";
    auto r = ctx.drain(n->second, !undo);
    if (!r) return error(500, r.error().message);
    return jsonResp(json{{"node", n->second}, {"drained", !undo}, {"drainedNodes", *r}});
  });
  r.get("/api/v1/pending", data(ctx, pending));
  // The firewall team's page (reads the audit log: off the feeds' thread).
  r.get(
      "/ui", [&ctx](const HttpRequest& q) { return webPage(ctx, q); }, Cost::kSlow);
  r.add("POST", "/api/v1/ack", [&ctx](const HttpRequest& q) {
    if (!ctx.acknowledge) return error(501, "the decommission handshake is not available here");
    // A standby's ledger view is not the leader's.
    if (const std::string why = ctx.not_serving ? ctx.not_serving() : ""; !why.empty())
      return error(503, why);
    if (auto bad = onlyParam(q, "ip")) return *bad;
    auto ipq = q.query.find("ip");
    if (ipq == q.query.end()) return error(400, "query parameter ip: required");
    auto ip = IpAddress::parse(ipq->second);
    if (!ip) return error(400, "query parameter ip: not an IP address");
    const std::string by = q.principal ? q.principal->name : "localhost";
    if (auto s = ctx.acknowledge(*ip, by); !s)
      return error(s.error().code == ENOENT ? 404 : 409, s.error().message);
    return jsonResp(json{{"ip", ip->str()},
                         {"acknowledgedBy", by},
                         {"result", "acknowledged: its quarantine starts at the next reconcile"}},
                    202);
  });
  for (const char* name : {"edl", "panos", "fortigate", "checkpoint"})
    r.get(std::string("/feeds/") + name + "/*", feedRoute(ctx, *feedFormat(name)), Cost::kFast,
          Access::kFeed);
  // Every pool's assignments: a pool-limited principal may not read them.
  r.get("/feeds/assignments.json", data(ctx, assignmentsJson));
  r.get("/feeds/assignments.csv", data(ctx, assignmentsCsv));
  r.get("/audit",
        data(ctx, [&ctx](const HttpRequest& q, const View&) { return auditRoute(ctx, q); }),
        Cost::kSlow);
  return r;
}

HttpResponse handleRequest(const ApiContext& ctx, const std::string& method,
                           const std::string& target) {
  return apiRouter(ctx).dispatch(HttpRequest::make(method, target));
}

}  // namespace nsegress::controller
