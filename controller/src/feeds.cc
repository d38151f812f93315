#include "nsegress/controller/feeds.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/encoding.h"
#include "nsegress/common/json.h"

namespace nsegress::controller {

namespace {

std::string digest(const char* algorithm, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_get_digestbyname(algorithm), nullptr);
  return std::string(reinterpret_cast<char*>(md), n);
}

// Kubernetes label syntax: a name is 1-63 characters of [A-Za-z0-9._-]
// beginning and ending alphanumeric; a key is an optional DNS-subdomain
// prefix and '/' then a name; a value is empty or a name.
bool labelName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}
bool labelKey(std::string_view k) {
  const auto slash = k.find('/');
  if (slash == std::string_view::npos) return labelName(k);
  return isDnsSubdomain(k.substr(0, slash)) && labelName(k.substr(slash + 1));
}

Result<Labels> parseLabels(const std::string& text) {
  Labels out;
  if (text.size() > 1024) return makeError(EINVAL, "labels: longer than 1024 characters");
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      return makeError(EINVAL, "labels: \"" + item.substr(0, 64) + "\" is not key=value");
    const std::string k = item.substr(0, eq), val = item.substr(eq + 1);
    if (!labelKey(k) || !(val.empty() || labelName(val)))
      return makeError(EINVAL, "labels: \"" + item.substr(0, 64) + "\" is not a label key=value");
    if (!out.emplace(k, val).second)
      return makeError(EINVAL, "labels: the key " + k + " is given twice (no namespace has both)");
    start = comma + 1;
  }
  return out;
}

// The token list of If-None-Match, compared weakly (RFC 9110 13.1.2).
bool noneMatch(std::string_view header, const std::string& etag) {
  size_t i = 0;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',' || header[i] == '\t')) ++i;
    size_t j = i;
    while (j < header.size() && header[j] != ',') ++j;
    std::string_view tag = header.substr(i, j - i);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag == "*") return true;
    if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (!tag.empty() && tag == etag) return true;
    i = j + 1;
  }
  return false;
}

}  // namespace

std::optional<FeedFormat> feedFormat(std::string_view name) {
  if (name == "edl") return FeedFormat::kEdl;
  if (name == "panos") return FeedFormat::kPanos;
  if (name == "fortigate") return FeedFormat::kFortigate;
  if (name == "checkpoint") return FeedFormat::kCheckpoint;
  return std::nullopt;
}

std::string sha256Hex(std::string_view data) {
  return hexEncode(digest("SHA256", data)) + "\n";
}

std::string namespaceUuid(const std::string& ns) {
  // nsegress's UUID namespace (a fixed random UUID: 6f2c6a0e-6d1b-4c3e-9b8a-2f1e5d7c9a41).
  static const unsigned char kSpace[16] = {0x6f, 0x2c, 0x6a, 0x0e, 0x6d, 0x1b, 0x4c, 0x3e,
                                           0x9b, 0x8a, 0x2f, 0x1e, 0x5d, 0x7c, 0x9a, 0x41};
  std::string in(reinterpret_cast<const char*>(kSpace), 16);
  in += ns;
  std::string h = digest("SHA1", in).substr(0, 16);
  h[6] = static_cast<char>((h[6] & 0x0f) | 0x50);  // version 5
  h[8] = static_cast<char>((h[8] & 0x3f) | 0x80);  // variant RFC 9562
  const std::string x = hexEncode(h);
  return x.substr(0, 8) + "-" + x.substr(8, 4) + "-" + x.substr(12, 4) + "-" + x.substr(16, 4) +
         "-" + x.substr(20);
}

std::string httpDate(Seconds t) {
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (t < 0 || t > kMaxTime) return "";
  const time_t tt = static_cast<time_t>(t);
  tm g{};
  if (!gmtime_r(&tt, &g)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[g.tm_wday], g.tm_mday,
                months[g.tm_mon], g.tm_year + 1900, g.tm_hour, g.tm_min, g.tm_sec);
  return buf;
}

std::optional<Seconds> parseHttpDate(std::string_view s) {
  // Exactly IMF-fixdate; anything else (the obsolete forms too) is ignored,
  // which only costs a full answer.
  if (s.size() != 29) return std::nullopt;
  const std::string text(s);
  tm g{};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &g);
  if (!end || *end != '\0') return std::nullopt;
  const time_t t = timegm(&g);
  if (t < 0 || t > kMaxTime) return std::nullopt;
  return static_cast<Seconds>(t);
}

Result<Feed> renderFeed(const View& v, const std::string& pool,
                        const std::optional<std::string>& labels, FeedFormat format) {
  Labels none;
  auto want = labels ? parseLabels(*labels) : Result<Labels>(none);
  if (!want) return want.error();
  // A pool exists while its definition does: the ledger's records of a pool
  // that was removed make no list (404, not an empty one).
  if (!v.pools.count(pool)) return makeError(ENOENT, "no pool " + pool);
  Feed f;
  struct Entry {
    IpAddress ip;
    std::string ns;
  };
  std::vector<Entry> live;
  for (const auto& [ip, r] : v.ledger) {
    if (r.pool != pool) continue;
    f.last_modified = std::max({f.last_modified, r.assigned_at, r.released_at});
    if (r.state != AddressState::kAssigned) continue;
    if (!want->empty()) {
      auto ns = v.namespaces.find(r.ns);
      if (ns == v.namespaces.end()) continue;
      bool all = true;
      for (const auto& [k, val] : *want) {
        auto it = ns->second.labels.find(k);
        all = all && it != ns->second.labels.end() && it->second == val;
      }
      if (!all) continue;
    }
    live.push_back({ip, r.ns});
  }
  // Last-Modified only where it is exact: a selection by labels can change
  // without a record changing (a namespace relabelled), and a change in the
  // same second as the last reconcile could follow unseen (one-second
  // resolution). The ETag covers both.
  if (!want->empty() || f.last_modified + 1 >= v.at) f.last_modified = 0;
  f.empty = live.empty();
  switch (format) {
    case FeedFormat::kEdl:
    case FeedFormat::kFortigate:
      f.content_type = "text/plain";
      for (const auto& e : live) f.body += e.ip.str() + "\n";
      break;
    case FeedFormat::kPanos:
      // PAN-OS takes the rest of a line after a space as a comment.
      f.content_type = "text/plain";
      for (const auto& e : live) f.body += e.ip.str() + " namespace " + e.ns + "\n";
      break;
    case FeedFormat::kCheckpoint: {
      nlohmann::json objects = nlohmann::json::array();
      std::map<std::string, std::vector<std::string>> by_ns;
      for (const auto& e : live) by_ns[e.ns].push_back(e.ip.str());
      for (const auto& [ns, ips] : by_ns)
        objects.push_back({{"name", ns},
                           {"id", namespaceUuid(ns)},
                           {"description", "egress addresses of namespace " + ns},
                           {"ranges", ips}});
      nlohmann::json doc{
          {"version", "1.0"},
          {"description", "nsegress pool " + pool + (labels ? " (labels " + *labels + ")" : "")},
          {"objects", objects}};
      f.content_type = "application/json";
      f.body = dumpJson(doc, 2) + "\n";
      break;
    }
  }
  f.etag = "\"" + hexEncode(digest("SHA256", f.body)).substr(0, 32) + "\"";
  return f;
}

Result<std::shared_ptr<const Feed>> FeedCache::get(const std::shared_ptr<const View>& view,
                                                   const std::string& key,
                                                   const std::function<Result<Feed>()>& render) {
  {
    std::lock_guard l(mu_);
    if (view_.lock() != view) {
      view_ = view;
      feeds_.clear();
    }
    if (auto it = feeds_.find(key); it != feeds_.end()) return it->second;
  }
  // Rendered outside the lock (two pollers may both render one key once).
  auto f = render();
  if (!f) return f.error();
  auto shared = std::make_shared<const Feed>(std::move(*f));
  std::lock_guard l(mu_);
  ++renders_;
  if (view_.lock() == view) {
    if (feeds_.size() >= max_) feeds_.clear();
    feeds_[key] = shared;
  }
  return shared;
}

uint64_t FeedCache::renders() const {
  std::lock_guard l(mu_);
  return renders_;
}

HttpResponse conditionalFeed(const HttpRequest& r, const Feed& feed, Seconds now) {
  HttpResponse out{200, feed.content_type, {}, ""};
  out.headers.add("ETag", feed.etag);
  if (feed.last_modified > 0) out.headers.add("Last-Modified", httpDate(feed.last_modified));
  out.headers.add("Cache-Control", "no-cache");
  if (feed.empty)
    out.headers.add("X-Nsegress-Feed", "empty; the pool has no live address in this selection");
  bool not_modified = false;
  if (auto inm = r.headers.get("if-none-match")) {
    not_modified = inm->size() <= 8192 && noneMatch(*inm, feed.etag);
  } else if (auto ims = r.headers.get("if-modified-since"); ims && feed.last_modified > 0) {
    auto t = parseHttpDate(*ims);
    // A date later than the server's time is not a valid validator.
    not_modified = t && *t >= feed.last_modified && *t <= now;
  }
  if (not_modified)
    out.status = 304;
  else
    out.body = feed.body;
  return out;
}

}  // namespace nsegress::controller
