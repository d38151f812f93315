// The controller's core loop step, independent of where objects come from
// (manifests or the Kubernetes API: a World either way) and of the store behind it:
// world -> allocate -> commit (one transaction) -> publish views and the
// gateways' desired states.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "nsegress/controller/manifests.h"
#include "nsegress/controller/port_blocks.h"
#include "nsegress/controller/store.h"

namespace nsegress::controller {

// Nothing is released on a source that is not a complete read, nor on one
// that would release many addresses at once (a half-written or truncated
// manifest, a namespace list read wrong) until an operator confirms. While a
// hold lasts the ledger and the gateways' states stay as they are.
struct ReleaseGuard {
  size_t min_releases = 3;    // a reconcile releasing at least this many addresses...
  double min_fraction = 0.5;  // ...and at least this share of the assigned ones is held
  // Off: only for tests that churn random worlds (never in a process).
  static ReleaseGuard offForTest() { return {SIZE_MAX, 2.0}; }
};

struct Hold {
  std::string reason;
  // Releases waiting for confirmation, and the token that confirms exactly
  // them ("" when the source itself is not sane: fix the source instead).
  std::vector<std::string> namespaces;
  std::string token;
  Seconds since = 0;
};

// What the HTTP API and the CLI read: an immutable snapshot.
struct View {
  Ledger ledger;
  std::map<std::string, NamespaceStatus> statuses;
  std::map<std::string, Namespace> namespaces;
  std::map<std::string, Pool> pools;
  std::vector<ManifestError> errors;
  std::optional<Hold> hold;
  // Non-empty: why this controller cannot apply changes now (e.g. the ledger
  // cannot be written); /readyz says so. Feeds keep serving the ledger.
  std::string not_ready;
  Seconds at = 0;
  uint64_t reconciles = 0;
  // Attribution by port: the blocks held now, per pool how they are used,
  // and pods that found no free block (fail-closed).
  std::vector<PortBlock> blocks;
  std::map<std::string, BlockUsage> block_usage;
  std::vector<std::string> starved;
};

struct ReconcileReport {
  size_t changed = 0;
  size_t events = 0;
  size_t gateways_written = 0;
  bool held = false;  // nothing applied: see View::hold
  std::optional<std::chrono::milliseconds> recheck_after;
  // When the gateways' states change next with nothing else happening (an
  // onboarding ends): reconcile again then.
  std::optional<Seconds> next_change_at;
};

class Controller {
 public:
  using Clock = std::function<Seconds()>;
  // `gateway_state_dir`: where <node>.json desired states are written ("" = don't).
  Controller(LedgerStore& store, Clock clock, std::string gateway_state_dir,
             ReleaseGuard guard = {});

  // Loads the ledger. Must succeed before reconcile().
  Status start();
  // `source`: whether `world` is a complete read (else everything is held).
  Result<ReconcileReport> reconcile(const World& world, std::vector<ManifestError> errors = {},
                                    const SourceState& source = {});
  // Confirms the held releases named by `token` (View::hold); they happen at
  // the next reconcile if they are still exactly the ones held. Thread-safe.
  Status confirmRelease(const std::string& token);
  // The decommission handshake: the firewall side (`by`, a principal or
  // "localhost") acknowledges the removal of `ip`, which must be waiting in
  // PendingFirewallCleanup; its quarantine starts at the next reconcile
  // (the caller wakes it). Thread-safe.
  Status acknowledgeRemoval(const IpAddress& ip, const std::string& by);
  // Called with each batch of audit events once it is committed (e.g. the
  // webhooks); on the reconcile thread, so it must not block.
  void setOnCommit(std::function<void(const std::vector<AuditEvent>&)> f) {
    on_commit_ = std::move(f);
  }
  std::shared_ptr<const View> view() const;
  LedgerStore& store() { return store_; }
  // The ledger as of the last reconcile (the reconcile thread only).
  const Ledger& ledger() const { return ledger_; }

 private:
  Status writeGatewayStates(const World& world, const Allocation& a, Seconds now,
                            ReconcileReport& rep);
  ReconcileReport hold(Hold h, const World& world, std::vector<ManifestError> errors);
  void publish(const World& world, std::vector<ManifestError> errors, std::optional<Hold> hold,
               Seconds now);

  LedgerStore& store_;
  Clock clock_;
  std::string state_dir_;
  Ledger ledger_;
  BlockBook blocks_;
  BlockPlan last_blocks_;
  bool started_ = false;
  std::map<std::string, NamespaceStatus> statuses_;
  std::map<std::string, std::string>
      written_;  // gateway -> last content written (without generation)
  uint64_t generation_ = 0;
  ReleaseGuard guard_;
  std::optional<Hold> hold_;
  std::string not_ready_;
  void setNotReady(std::string why);
  std::string confirmed_;  // a confirmed token (guarded by mu_)
  std::map<IpAddress, std::string> acknowledged_;
  std::function<void(const std::vector<AuditEvent>&)>
      on_commit_;  // address -> by whom (guarded by mu_)
  mutable std::mutex mu_;
  std::shared_ptr<const View> view_;
};

}  // namespace nsegress::controller
