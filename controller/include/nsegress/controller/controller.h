// The controller's core loop step, independent of where objects come from
// (manifests or the Kubernetes API: a World either way) and of the store behind it:
// world -> allocate -> commit (one transaction) -> publish views and the
// gateways' desired states.
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include "nsegress/controller/manifests.h"
#include "nsegress/controller/store.h"

namespace nsegress::controller {

// What the HTTP API and the CLI read: an immutable snapshot.
struct View {
  Ledger ledger;
  std::map<std::string, NamespaceStatus> statuses;
  std::map<std::string, Namespace> namespaces;
  std::map<std::string, Pool> pools;
  std::vector<ManifestError> errors;
  Seconds at = 0;
  uint64_t reconciles = 0;
};

struct ReconcileReport {
  size_t changed = 0;
  size_t events = 0;
  size_t gateways_written = 0;
};

class Controller {
 public:
  using Clock = std::function<Seconds()>;
  // `gateway_state_dir`: where <node>.json desired states are written ("" = don't).
  Controller(LedgerStore& store, Clock clock, std::string gateway_state_dir);

  // Loads the ledger. Must succeed before reconcile().
  Status start();
  Result<ReconcileReport> reconcile(const World& world, std::vector<ManifestError> errors = {});
  std::shared_ptr<const View> view() const;
  LedgerStore& store() { return store_; }

 private:
  Status writeGatewayStates(const World& world, const Allocation& a, ReconcileReport& rep);

  LedgerStore& store_;
  Clock clock_;
  std::string state_dir_;
  Ledger ledger_;
  bool started_ = false;
  std::map<std::string, NamespaceStatus> statuses_;
  std::map<std::string, std::string>
      written_;  // gateway -> last content written (without generation)
  uint64_t generation_ = 0;
  mutable std::mutex mu_;
  std::shared_ptr<const View> view_;
  uint64_t reconciles_ = 0;
};

}  // namespace nsegress::controller
