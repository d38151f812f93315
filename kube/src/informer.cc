#include "nsegress/kube/informer.h"

#include <cctype>
#include <random>

namespace nsegress::kube {

using nlohmann::json;

namespace {
json pick(const json& o, std::initializer_list<const char*> keys) {
  json out = json::object();
  if (!o.is_object()) return out;
  for (const char* k : keys)
    if (o.contains(k)) out[k] = o[k];
  return out;
}
json meta(const json& o, std::initializer_list<const char*> keys) {
  return pick(o.value("metadata", json::object()), keys);
}
}  // namespace

json trimNamespace(const json& o) {
  return json{{"apiVersion", "v1"},
              {"kind", "Namespace"},
              {"metadata", meta(o, {"name", "labels", "annotations", "deletionTimestamp",
                                    "finalizers", "resourceVersion"})}};
}
json trimPod(const json& o) {
  const json& m = o.is_object() ? o.value("metadata", json::object()) : json::object();
  const json& spec = o.is_object() ? o.value("spec", json::object()) : json::object();
  const json& st = o.is_object() ? o.value("status", json::object()) : json::object();
  auto str = [](const json& obj, const char* k) {
    auto it = obj.is_object() ? obj.find(k) : obj.end();
    return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string ns = str(m, "namespace");
  json t = json::array({ns.empty() ? "default" : ns, str(m, "name"), str(st, "phase"),
                        spec.is_object() && spec.value("hostNetwork", json()) == true});
  if (st.is_object() && st.contains("podIPs") && st["podIPs"].is_array()) {
    for (const auto& e : st["podIPs"]) t.push_back(str(e, "ip"));
  } else if (!str(st, "podIP").empty()) {
    t.push_back(str(st, "podIP"));
  }
  return t;
}

std::optional<CachedPod> cachedPod(const json& t) {
  if (!t.is_array() || t.size() < 4 || !t[0].is_string() || !t[1].is_string() ||
      !t[2].is_string() || !t[3].is_boolean())
    return std::nullopt;
  CachedPod p{t[0], t[1], t[2], t[3].get<bool>(), {}};
  for (size_t i = 4; i < t.size(); ++i)
    if (t[i].is_string()) p.ips.push_back(t[i]);
  return p;
}

json trimNode(const json& o) {
  json conds = json::array();
  for (const auto& c : o.value("status", json::object()).value("conditions", json::array()))
    if (c.value("type", "") == "Ready") conds.push_back(pick(c, {"type", "status"}));
  return json{{"apiVersion", "v1"},
              {"kind", "Node"},
              {"metadata", meta(o, {"name", "labels"})},
              {"status", {{"conditions", conds}}}};
}
json trimEgressPool(const json& o) {
  return json{{"apiVersion", "nsegress.io/v1alpha1"},
              {"kind", "EgressPool"},
              {"metadata", meta(o, {"name"})},
              {"spec", o.value("spec", json::object())}};
}

json trimEgressIP(const json& o) {
  return json{{"apiVersion", "nsegress.io/v1alpha1"},
              {"kind", "EgressIP"},
              {"metadata", meta(o, {"name"})},
              {"spec", pick(o.value("spec", json::object()), {"ip", "pool"})},
              {"status", pick(o.value("status", json::object()), {"state", "namespace", "node"})}};
}

Informer::Informer(KubeConfig cfg, std::string path, Trim trim, std::function<void()> on_change)
    : cfg_(std::move(cfg)),
      path_(std::move(path)),
      trim_(std::move(trim)),
      on_change_(std::move(on_change)) {}

Informer::~Informer() {
  stop();
}

void Informer::start() {
  thread_ = std::thread([this] { run(); });
}

void Informer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::map<std::string, json> Informer::snapshot() const {
  std::lock_guard l(mu_);
  return items_;
}

void Informer::read(const std::function<void(const std::map<std::string, json>&)>& fn) const {
  std::lock_guard l(mu_);
  fn(items_);
}

InformerStats Informer::stats() const {
  std::lock_guard l(mu_);
  return stats_;
}

std::string Informer::keyOf(const json& o) const {
  if (auto p = cachedPod(o)) return p->name.empty() ? "" : p->ns + "/" + p->name;
  const auto& m = o.value("metadata", json::object());
  const std::string ns = m.value("namespace", "");
  return ns.empty() ? m.value("name", "") : ns + "/" + m.value("name", "");
}

namespace {
std::string percentEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      o += static_cast<char>(c);
    } else {
      o += '%';
      o += hex[c >> 4];
      o += hex[c & 15];
    }
  }
  return o;
}
}  // namespace

bool Informer::list() {
  // Paginated (limit/continue), each page trimmed as it arrives: a cluster's
  // full Pod list is far larger than what the cache keeps.
  Client c(cfg_, ClientOptions{50, 100, std::chrono::seconds(30)});
  const char sep = path_.find('?') == std::string::npos ? '?' : '&';
  std::map<std::string, json> fresh;
  std::string cont, rv;
  size_t pages = 0;
  do {
    std::string url = path_ + sep + "limit=" + std::to_string(page_size_);
    if (!cont.empty()) url += "&continue=" + percentEncode(cont);
    auto r = c.request("GET", url);
    // 410 on a continue: the snapshot expired mid-list; start over (backoff).
    if (!r || r->status != 200) return false;
    auto j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j["items"].is_array()) return false;
    for (const auto& item : j["items"]) {
      json t = trim_(item);
      const std::string k = keyOf(t);
      if (!k.empty()) fresh[k] = std::move(t);
    }
    const auto& meta = j.value("metadata", json::object());
    rv = meta.value("resourceVersion", rv);
    cont = meta.value("continue", "");
    ++pages;
  } while (!cont.empty() && !stop_);
  if (stop_) return false;
  {
    std::lock_guard l(mu_);
    items_ = std::move(fresh);
    rv_ = rv;
    stats_.lists++;
    stats_.list_pages += pages;
  }
  synced_ = true;
  on_change_();
  return true;
}

void Informer::run() {
  std::mt19937 rng(std::random_device{}());
  auto backoff = std::chrono::milliseconds(100);
  auto sleep = [&](std::chrono::milliseconds d) {
    // Jitter: 50-150 % of the nominal delay, sliced so stop() is prompt.
    auto total = d * (50 + rng() % 101) / 100;
    for (auto t = std::chrono::milliseconds(0); t < total && !stop_;
         t += std::chrono::milliseconds(50))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  bool need_list = true;
  while (!stop_) {
    if (need_list) {
      if (!list()) {
        {
          std::lock_guard l(mu_);
          stats_.errors++;
        }
        sleep(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
        continue;
      }
      need_list = false;
    }
    Client c(cfg_, ClientOptions{50, 100, std::chrono::seconds(30)});
    std::string rv;
    {
      std::lock_guard l(mu_);
      rv = rv_;
      stats_.watches++;
    }
    const char sep = path_.find('?') == std::string::npos ? '?' : '&';
    bool gone = false;
    auto w = c.watch(
        path_ + sep + "watch=1&allowWatchBookmarks=true&timeoutSeconds=20&resourceVersion=" + rv,
        [&](const std::string& line) {
          if (stop_) return false;
          auto e = json::parse(line, nullptr, false);
          if (!e.is_object()) return true;  // malformed line: skip it, keep the stream
          const std::string type = e.value("type", "");
          const auto& obj = e.value("object", json::object());
          if (type == "ERROR") {
            gone = obj.value("code", 0) == 410;
            return false;
          }
          {
            std::lock_guard l(mu_);
            const std::string new_rv =
                obj.value("metadata", json::object()).value("resourceVersion", "");
            if (!new_rv.empty()) rv_ = new_rv;
            if (type == "BOOKMARK") {
              stats_.bookmarks++;
              return true;
            }
            json t = trim_(obj);
            const std::string k = keyOf(t);
            if (k.empty()) return true;
            if (type == "DELETED")
              items_.erase(k);
            else
              items_[k] = std::move(t);
            stats_.events++;
          }
          on_change_();  // per event, outside the lock: consumers coalesce
          return true;
        },
        std::chrono::seconds(40), &stop_);
    if (gone || (w && *w == 410)) {
      std::lock_guard l(mu_);
      stats_.relists_410++;
      need_list = true;
      continue;
    }
    if (!w || *w != 200) {
      {
        std::lock_guard l(mu_);
        stats_.errors++;
      }
      sleep(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(10000));
      if (w && (*w == 401 || *w == 403 || *w >= 500)) need_list = true;
      continue;
    }
    backoff = std::chrono::milliseconds(100);  // a healthy stream that ended: resume at once
  }
}

}  // namespace nsegress::kube
