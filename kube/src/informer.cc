#include "nsegress/kube/informer.h"
#include "nsegress/common/encoding.h"
#include "nsegress/common/json.h"

#include <cctype>

namespace nsegress::kube {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {
std::string text(const json& o, const char* key) {
  if (!o.is_object()) return "";
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}
}  // namespace

InformerBase::InformerBase(Api& api, Clock& clock, std::string path,
                           std::function<void()> on_change, InformerOptions o)
    : api_(api),
      clock_(clock),
      path_(std::move(path)),
      on_change_(std::move(on_change)),
      o_(o),
      backoff_(o.backoff_min),
      rng_(o.seed) {}

InformerBase::~InformerBase() {
  stop();
}

void InformerBase::start() {
  thread_ = std::thread([this] {
    while (!stop_.requested()) {
      const auto d = step();
      if (d.count() > 0) clock_.sleepFor(d, stop_);
    }
  });
}

void InformerBase::stop() {
  stop_.request();
  cancel_ = true;
  if (thread_.joinable()) thread_.join();
}

InformerStats InformerBase::stats() const {
  std::lock_guard l(mu_);
  auto s = stats_;
  s.malformed = malformed_.size();
  return s;
}

std::map<std::string, std::string> InformerBase::malformed() const {
  std::lock_guard l(mu_);
  return malformed_;
}

void InformerBase::setMalformed(const std::string& key, const std::string& why, bool staged) {
  auto& m = staged ? staged_malformed_ : malformed_;
  if (why.empty())
    m.erase(key);
  else
    m[key] = why;
}

std::string InformerBase::keyOf(const json& o) {
  const json meta = o.is_object() ? o.value("metadata", json::object()) : json::object();
  const std::string ns = text(meta, "namespace"), name = text(meta, "name");
  if (name.empty()) return "";
  return ns.empty() ? name : ns + "/" + name;
}

milliseconds InformerBase::failed() {
  connected_ = false;
  {
    std::lock_guard l(mu_);
    stats_.errors++;
  }
  // Jitter: 50-150 % of the nominal delay, so replicas do not retry in step.
  const auto d = backoff_ * (50 + rng_() % 101) / 100;
  backoff_ = std::min(backoff_ * 2, o_.backoff_max);
  return d;
}

bool InformerBase::list() {
  // Paginated (limit/continue); each page decoded as it arrives: a cluster's
  // full Pod list is far larger than what the cache keeps.
  const char sep = path_.find('?') == std::string::npos ? '?' : '&';
  std::string cont, rv;
  size_t pages = 0;
  staged_malformed_.clear();
  do {
    std::string url = path_ + sep + "limit=" + std::to_string(o_.page_size);
    if (!cont.empty()) url += "&continue=" + percentEncode(cont);
    auto r = api_.request("GET", url);
    // 410 on a continue: the snapshot expired mid-list; start over (backoff).
    bool ok = r && r->status == 200;
    json j;
    if (ok) {
      j = parseJsonOrDiscarded(r->body);
      ok = j.is_object() && j.contains("items") && j["items"].is_array();
    }
    if (!ok) {
      discardStaged();
      return false;
    }
    for (const auto& item : j["items"]) {
      const std::string k = keyOf(item);
      if (!k.empty()) stage(k, item);
    }
    const json meta = j.value("metadata", json::object());
    rv = text(meta, "resourceVersion").empty() ? rv : text(meta, "resourceVersion");
    cont = text(meta, "continue");
    ++pages;
  } while (!cont.empty() && !stop_.requested());
  if (stop_.requested()) {
    discardStaged();
    return false;
  }
  {
    std::lock_guard l(mu_);
    commitStaged();
    malformed_ = std::move(staged_malformed_);
    staged_malformed_.clear();
    rv_ = rv;
    stats_.lists++;
    stats_.list_pages += pages;
  }
  synced_ = true;
  connected_ = true;
  on_change_();
  return true;
}

milliseconds InformerBase::step() {
  if (need_list_) {
    if (!list()) return failed();
    need_list_ = false;
  }
  std::string rv;
  {
    std::lock_guard l(mu_);
    rv = rv_;
    stats_.watches++;
  }
  const char sep = path_.find('?') == std::string::npos ? '?' : '&';
  bool gone = false;
  auto w = api_.watch(
      path_ + sep + "watch=1&allowWatchBookmarks=true&timeoutSeconds=" +
          std::to_string(o_.watch_timeout.count()) + "&resourceVersion=" + rv,
      [&](const std::string& line) {
        if (stop_.requested()) return false;
        connected_ = true;  // the stream is open and talking
        auto e = parseJsonOrDiscarded(line);
        if (!e.is_object()) return true;  // malformed line: skip it, keep the stream
        const std::string type = text(e, "type");
        const json& obj = e.contains("object") ? e["object"] : json();
        if (type == "ERROR") {
          gone = obj.is_object() && obj.value("code", json()) == 410;
          return false;
        }
        {
          std::lock_guard l(mu_);
          const std::string new_rv = text(obj.value("metadata", json::object()), "resourceVersion");
          if (!new_rv.empty()) rv_ = new_rv;
          if (type == "BOOKMARK") {
            stats_.bookmarks++;
            return true;
          }
          const std::string k = keyOf(obj);
          if (k.empty()) return true;
          if (type == "DELETED")
            erase(k);
          else if (type == "ADDED" || type == "MODIFIED")
            upsert(k, obj);
          else
            return true;
          stats_.events++;
        }
        on_change_();  // per event, outside the lock: consumers coalesce
        return true;
      },
      o_.watch_timeout + std::chrono::seconds(20), &cancel_);
  if (gone || (w && *w == 410)) {
    std::lock_guard l(mu_);
    stats_.relists_410++;
    need_list_ = true;
    return milliseconds(0);
  }
  if (!w || *w != 200) {
    // Credentials or server trouble: the cache may be stale, list again.
    if (w && (*w == 401 || *w == 403 || *w >= 500)) need_list_ = true;
    return failed();
  }
  connected_ = true;
  backoff_ = o_.backoff_min;  // a healthy stream that ended: resume at once
  return milliseconds(0);
}

}  // namespace nsegress::kube
