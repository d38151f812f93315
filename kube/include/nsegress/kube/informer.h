// List-then-watch cache of one resource (an informer, after client-go):
// lists (in pages), then watches from the list's resourceVersion with
// bookmarks; a watch that ends is resumed from the last version seen; 410
// Gone relists; errors back off exponentially with jitter. Objects are
// decoded into typed values as they arrive (Informer<T> with a decoder from
// common/decode.h): the cache holds exactly what nsegress uses, and an
// object that does not decode is skipped and reported, never cached.
//
// The API and the clock are injected; step() is one list or one watch and
// returns the delay before the next, so the loop's logic is unit-tested
// without threads or sleeps.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "nsegress/common/clock.h"
#include "nsegress/common/result.h"
#include "nsegress/kube/api.h"

namespace nsegress::kube {

struct InformerStats {
  uint64_t lists = 0, list_pages = 0, watches = 0, events = 0, relists_410 = 0, errors = 0,
           bookmarks = 0;
  uint64_t malformed = 0;  // objects in the cache's view that did not decode
};

struct InformerOptions {
  size_t page_size = 500;  // objects per list page (limit/continue)
  std::chrono::milliseconds backoff_min{100}, backoff_max{10'000};
  std::chrono::seconds watch_timeout{20};  // asked of the server (timeoutSeconds)
  uint32_t seed = std::random_device{}();  // jitter
};

class InformerBase {
 public:
  InformerBase(Api& api, Clock& clock, std::string path, std::function<void()> on_change,
               InformerOptions o = {});
  virtual ~InformerBase();
  InformerBase(const InformerBase&) = delete;
  InformerBase& operator=(const InformerBase&) = delete;

  void start();  // a thread running step() until stop()
  void stop();
  bool synced() const { return synced_; }  // listed at least once (the cache is usable)
  // Synced, and its last request to the API server succeeded (false from the
  // first failed list or watch until one succeeds again): the cache is
  // current, not just usable.
  bool connected() const { return synced_ && connected_; }
  InformerStats stats() const;
  // key -> why, for objects skipped because they did not decode.
  std::map<std::string, std::string> malformed() const;
  const std::string& path() const { return path_; }

  // One list (when needed) or one watch until it ends. Returns how long to
  // wait before the next step: 0 after a healthy watch, a growing,
  // jittered backoff after errors.
  std::chrono::milliseconds step();

 protected:
  // A list in progress (informer thread only; no lock): each item decoded
  // as its page arrives, then swapped in at once under mu_.
  virtual void stage(const std::string& key, const nlohmann::json& obj) = 0;
  virtual void commitStaged() = 0;  // mu_ held
  virtual void discardStaged() = 0;
  // A watch event; mu_ held.
  virtual void upsert(const std::string& key, const nlohmann::json& obj) = 0;
  virtual void erase(const std::string& key) = 0;
  // Decode failures: key -> why ("" clears). Staged ones replace the
  // current ones with the list.
  void setMalformed(const std::string& key, const std::string& why, bool staged = false);
  mutable std::mutex mu_;

 private:
  bool list();
  std::chrono::milliseconds failed();
  static std::string keyOf(const nlohmann::json& o);

  Api& api_;
  Clock& clock_;
  std::string path_;
  std::function<void()> on_change_;
  InformerOptions o_;
  Stopper stop_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> synced_{false};
  std::atomic<bool> connected_{false};
  bool need_list_ = true;
  std::string rv_;
  std::chrono::milliseconds backoff_;
  std::mt19937 rng_;
  InformerStats stats_;
  std::map<std::string, std::string> malformed_, staged_malformed_;
  std::thread thread_;
};

template <typename T>
class Informer final : public InformerBase {
 public:
  using Decode = std::function<Result<T>(const nlohmann::json&)>;
  Informer(Api& api, Clock& clock, std::string path, Decode decode, std::function<void()> on_change,
           InformerOptions o = {})
      : InformerBase(api, clock, std::move(path), std::move(on_change), o),
        decode_(std::move(decode)) {}
  ~Informer() override { stop(); }
  // Runs `fn` on the cache without copying it; the informer cannot apply
  // events meanwhile, so `fn` should be quick and must not call back.
  void read(const std::function<void(const std::map<std::string, T>&)>& fn) const {
    std::lock_guard l(mu_);
    fn(items_);
  }

 private:
  void stage(const std::string& key, const nlohmann::json& obj) override {
    auto v = decode_(obj);
    if (!v) {
      setMalformed(key, v.error().message, /*staged=*/true);
      return;
    }
    staged_.insert_or_assign(key, std::move(*v));
  }
  void commitStaged() override {
    items_ = std::move(staged_);
    staged_.clear();
  }
  void discardStaged() override { staged_.clear(); }
  void upsert(const std::string& key, const nlohmann::json& obj) override {
    auto v = decode_(obj);
    if (!v) {
      items_.erase(key);  // never keep a stale version of an object now malformed
      setMalformed(key, v.error().message);
      return;
    }
    setMalformed(key, "");
    items_.insert_or_assign(key, std::move(*v));
  }
  void erase(const std::string& key) override {
    items_.erase(key);
    setMalformed(key, "");
  }

  Decode decode_;
  std::map<std::string, T> items_, staged_;
};

}  // namespace nsegress::kube
