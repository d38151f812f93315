// List-then-watch cache of one resource (an informer, after client-go):
// lists (in pages of 500), then watches from the list's resourceVersion with bookmarks; a
// watch that ends is resumed from the last version seen; 410 Gone relists;
// errors back off exponentially with jitter (no busy loop). The cache keeps
// only the fields nsegress uses (`trim`), so memory stays lean.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nsegress/kube/client.h"

namespace nsegress::kube {

struct InformerStats {
  uint64_t lists = 0, list_pages = 0, watches = 0, events = 0, relists_410 = 0, errors = 0,
           bookmarks = 0;
};

class Informer {
 public:
  using Trim = std::function<nlohmann::json(const nlohmann::json&)>;
  Informer(KubeConfig cfg, std::string path, Trim trim, std::function<void()> on_change);
  ~Informer();
  // Objects per list page (limit/continue); set before start().
  void setPageSize(size_t n) { page_size_ = n; }
  void start();
  void stop();
  bool synced() const { return synced_; }
  // name ("ns/name" for namespaced objects) -> trimmed object
  std::map<std::string, nlohmann::json> snapshot() const;
  // Runs `fn` on the cache without copying it; the informer cannot apply
  // events meanwhile, so `fn` should be quick and must not call back.
  void read(const std::function<void(const std::map<std::string, nlohmann::json>&)>& fn) const;
  InformerStats stats() const;

 private:
  void run();
  bool list();
  std::string keyOf(const nlohmann::json& o) const;

  KubeConfig cfg_;
  std::string path_;
  Trim trim_;
  std::function<void()> on_change_;
  std::atomic<bool> stop_{false}, synced_{false};
  std::string rv_;
  size_t page_size_ = 500;
  mutable std::mutex mu_;
  std::map<std::string, nlohmann::json> items_;
  InformerStats stats_;
  std::thread thread_;
};

// Trims for the kinds the controller and the gateway watch.
nlohmann::json trimNamespace(const nlohmann::json& o);
// Pods, the bulk of every cache, are kept as a compact array
// [namespace, name, phase, hostNetwork, ip...] rather than an object:
// 0.56 KB instead of 2.1 KB per pod (bench/results/cache_memory.md).
nlohmann::json trimPod(const nlohmann::json& o);
struct CachedPod {
  std::string ns, name, phase;
  bool host_network = false;
  std::vector<std::string> ips;  // as the API reported them (not validated)
};
std::optional<CachedPod> cachedPod(const nlohmann::json& trimmed);
nlohmann::json trimNode(const nlohmann::json& o);
nlohmann::json trimEgressPool(const nlohmann::json& o);
nlohmann::json trimEgressIP(const nlohmann::json& o);

}  // namespace nsegress::kube
