#include "nsegress/controller/web.h"

#include "nsegress/common/json.h"

namespace nsegress::controller {

std::string htmlEscape(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size();) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    // Multi-byte UTF-8 is copied when well formed, else replaced.
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= in.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 2;
    if (!ok) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (n > 1) {
      out.append(in, i, n);
      i += n;
      continue;
    }
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if (c < 0x20 && c != '\n' && c != '\t')
          out += "\xEF\xBF\xBD";
        else
          out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

namespace {

const char* kStyle =
    "body{font-family:'DejaVu Sans',sans-serif;margin:1.5em;color:#111}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em "
    ".6em;text-align:left;font-size:.9em}th{background:#f2f2f2}.muted{color:#666}"
    ".warn{color:#a40}.answer{padding:.5em;background:#eef6ee;border:1px solid #9c9}"
    "code{font-size:.9em}";

std::string esc(const std::string& s) {
  return htmlEscape(s);
}

std::string whoSection(const ApiContext& ctx, const HttpRequest& r, const View& v, int* status) {
  std::string out = "<h2 id=\"who\">Who was behind an address</h2>\n";
  auto ipq = r.query.find("ip");
  auto atq = r.query.find("at");
  const std::string ip_text = ipq == r.query.end() ? "" : ipq->second;
  const std::string at_text = atq == r.query.end() ? "" : atq->second;
  out += "<form method=\"get\" action=\"/ui\"><label>Address <input name=\"ip\" value=\"" +
         esc(ip_text.substr(0, 64)) +
         "\" placeholder=\"203.0.113.10\"></label> <label>at <input name=\"at\" value=\"" +
         esc(at_text.substr(0, 64)) +
         "\" placeholder=\"2026-11-26T14:02:00Z or Unix seconds\"></label> "
         "<button type=\"submit\">Search</button></form>\n";
  if (ipq == r.query.end()) return out;
  auto ip = IpAddress::parse(ip_text);
  std::optional<Seconds> at = at_text.empty() ? std::optional(v.at) : parseTime(at_text);
  if (!ip || !at) {
    *status = 400;
    return out + "<p class=\"warn\" id=\"who-error\">" +
           (!ip ? std::string("Not an IP address.")
                : std::string("Not a time: give RFC 3339 UTC (2026-11-26T14:02:00Z) or Unix "
                              "seconds.")) +
           "</p>\n";
  }
  if (!ctx.store) return out + "<p class=\"warn\">No audit log here.</p>\n";
  auto history = ctx.store->history(*ip);
  if (!history) {
    *status = 500;
    return out + "<p class=\"warn\">The audit log could not be read.</p>\n";
  }
  auto who = whoHad(*history, *ip, *at);
  out += "<p class=\"answer\" id=\"who-answer\">" + esc(ip->str()) + " at " + esc(formatTime(*at)) +
         ": " + (who ? "namespace <b>" + esc(*who) + "</b>" : std::string("nobody")) + "</p>\n";
  return out;
}

}  // namespace

HttpResponse webPage(const ApiContext& ctx, const HttpRequest& r) {
  HttpResponse resp{200, "text/html; charset=utf-8", {}, ""};
  resp.headers.add("Content-Security-Policy",
                   "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                   "frame-ancestors 'none'; base-uri 'none'");
  resp.headers.add("X-Content-Type-Options", "nosniff");
  resp.headers.add("Referrer-Policy", "no-referrer");
  resp.headers.add("Cache-Control", "no-store");
  const std::string why = ctx.not_serving ? ctx.not_serving() : "";
  std::string& b = resp.body;
  b = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>nsegress: egress "
      "addresses for the firewall team</title><style>" +
      std::string(kStyle) + "</style></head><body>\n<h1>nsegress egress addresses</h1>\n";
  if (!why.empty()) {
    // A standby never shows a list as if it were the truth.
    resp.status = 503;
    b += "<p class=\"warn\" id=\"not-serving\">" + esc(why) +
         ". Ask the leader (the Service routes to it).</p></body></html>\n";
    return resp;
  }
  const auto v = ctx.view();
  b += "<p class=\"muted\" id=\"as-of\">As of " + esc(formatTime(v->at)) +
       (v->hold ? " &mdash; <span class=\"warn\">changes held: " + esc(v->hold->reason) + "</span>"
                : std::string()) +
       "</p>\n";
  // Who-was-behind first when asked, so the answer is at the top.
  int status = 200;
  const std::string who = whoSection(ctx, r, *v, &status);
  resp.status = status;
  if (r.query.count("ip")) b += who;

  b += "<h2>Allowlist per pool</h2>\n";
  for (const auto& [pname, pool] : v->pools) {
    b += "<h3 id=\"pool-" + esc(pname) + "\">Pool " + esc(pname) + "</h3>\n";
    if (pool.invalid) b += "<p class=\"warn\">Invalid: " + esc(*pool.invalid) + "</p>\n";
    b += "<p class=\"muted\">Feeds: ";
    for (const char* f : {"edl", "panos", "fortigate", "checkpoint"})
      b += "<a href=\"/feeds/" + std::string(f) + "/" + esc(pname) + "\">" + f + "</a> ";
    b += "(each with a .sha256 checksum beside it)";
    if (pool.acknowledge_removal) b += "; releases wait for your acknowledgement";
    if (pool.onboarding)
      b += "; new addresses published " + std::to_string(pool.onboarding) + " s before use";
    b += "</p>\n<table class=\"allowlist\" data-pool=\"" + esc(pname) +
         "\"><tr><th>Address</th><th>Namespace</th><th>Since</th><th>In use</th></tr>\n";
    size_t n = 0;
    for (const auto& [ip, rec] : v->ledger) {
      if (rec.pool != pname || rec.state != AddressState::kAssigned) continue;
      ++n;
      b += "<tr><td class=\"ip\">" + esc(ip.str()) + "</td><td>" + esc(rec.ns) + "</td><td>" +
           esc(formatTime(rec.assigned_at)) + "</td><td>" +
           (rec.usable(v->at) ? std::string("yes")
                              : "from " + esc(formatTime(rec.usable_at)) + " (onboarding)") +
           "</td></tr>\n";
    }
    if (n == 0) b += "<tr><td colspan=\"4\" class=\"muted\">no live address</td></tr>\n";
    b += "</table>\n";
  }

  b += "<h2>Waiting on the firewall side</h2>\n<table id=\"pending\"><tr><th>Address</th>"
       "<th>Pool</th><th>Namespace</th><th>Waiting for</th><th>Since</th></tr>\n";
  size_t waiting = 0;
  for (const auto& [ip, rec] : v->ledger) {
    std::string what;
    Seconds since = 0;
    if (rec.state == AddressState::kPendingFirewallCleanup) {
      what = "removal from your rules, then <code>nsegressctl ack " + esc(ip.str()) + "</code>";
      since = rec.released_at;
    } else if (rec.state == AddressState::kAssigned && !rec.usable(v->at)) {
      what = "onboarding: add it now; pods use it from " + esc(formatTime(rec.usable_at));
      since = rec.assigned_at;
    } else {
      continue;
    }
    ++waiting;
    b += "<tr><td class=\"ip\">" + esc(ip.str()) + "</td><td>" + esc(rec.pool) + "</td><td>" +
         esc(rec.ns) + "</td><td>" + what + "</td><td>" + esc(formatTime(since)) + "</td></tr>\n";
  }
  if (waiting == 0) b += "<tr><td colspan=\"5\" class=\"muted\">nothing waits</td></tr>\n";
  b += "</table>\n";

  if (!r.query.count("ip")) b += who;

  b += "<h2>Recent changes</h2>\n<table id=\"audit\"><tr><th>When</th><th>What</th>"
       "<th>Address</th><th>Namespace</th><th>Details</th></tr>\n";
  if (ctx.store) {
    auto recent = ctx.store->recent(50);
    if (recent) {
      for (auto it = recent->rbegin(); it != recent->rend(); ++it) {
        const auto& e = it->event;
        b += "<tr><td>" + esc(formatTime(e.at)) + "</td><td>" + esc(e.kind) + "</td><td>" +
             esc(e.ip) + "</td><td>" + esc(e.ns) + "</td><td>" + esc(e.message) + "</td></tr>\n";
      }
    } else {
      b += "<tr><td colspan=\"5\" class=\"warn\">the audit log could not be read</td></tr>\n";
    }
  }
  b += "</table>\n<p class=\"muted\">Read-only. The JSON API and the feeds are documented in "
       "docs/firewall-team-guide.md.</p>\n</body></html>\n";
  return resp;
}

}  // namespace nsegress::controller
