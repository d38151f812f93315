// The ledger in the Kubernetes API: one cluster-scoped EgressIP object per
// address (named after it; IPv6 ':' becomes '-'). Safety comes from the API
// server's optimistic concurrency:
//  - a new address is claimed by creating its object: create-if-absent, so of
//    two controllers only one succeeds (409 AlreadyExists for the other);
//  - every change of an existing address is a status update carrying the
//    resourceVersion this controller read: a stale writer gets 409 Conflict.
// A conflict fails the commit; the controller reloads and converges.
// Kubernetes has no multi-object transactions: a commit that conflicts part
// way has written its earlier records (each one individually safe).
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "nsegress/common/clock.h"

#include <atomic>
#include <functional>
#include "nsegress/controller/store.h"

#include "nsegress/kube/api.h"

namespace nsegress::controller::cluster {

std::string egressIpObjectName(const IpAddress& ip);

class KubeLedgerStore final : public LedgerStore {
 public:
  KubeLedgerStore(kube::Api& api, Clock& clock, std::string state_namespace = "nsegress-system");
  Result<Ledger> load() override;
  using LedgerStore::commit;
  Status commit(std::vector<AddressRecord>& changed, const std::vector<AuditEvent>& events,
                const std::map<std::string, std::string>& meta = {}) override;
  // The durable audit trail is each address's history in its EgressIP status
  // (the last kHistoryMax changes, written atomically with the record); see
  // audit() in kube_store.cc for how it is merged.
  Result<std::vector<StoredEvent>> audit(int64_t since, size_t limit) override;
  static constexpr size_t kHistoryMax = 64;
  static constexpr size_t kParallelWrites = 8;  // records written at once within a commit
  Result<std::optional<std::string>> meta(const std::string& key) override;

  // Who reports the Events (reportingInstance: this replica's identity) and
  // how to find the uid of the Namespace an Event regards ("" if unknown).
  void setReporter(std::string instance, std::function<std::string(const std::string&)> uid_of) {
    instance_ = std::move(instance);
    uid_of_ = std::move(uid_of);
  }

  // Events go through `send` (e.g. a kube::RequestQueue) instead of being
  // written inline, so a burst of commits never waits for its Events.
  using EventSender = std::function<void(std::string path, std::string body)>;
  void setEventSender(EventSender send) { send_event_ = std::move(send); }
  // Called after each record is written with the state Assigned (e.g. to
  // write the namespace's annotation at once, not after the whole batch).
  void setOnAssigned(std::function<void(const AddressRecord&)> f) { on_assigned_ = std::move(f); }
  // The result of an Event write (inline or from the sender).
  void eventWritten(const std::string& ns, const Result<kube::Response>& r);

  // Records and the ledger objects skipped at the last load (malformed).
  size_t skippedAtLoad() const { return skipped_; }
  uint64_t conflicts() const { return conflicts_; }
  uint64_t eventFailures() const { return event_failures_; }

  // Tests only: every successful write (resourceVersion, record) from now
  // on, to replay the writes of several controllers in the API server's
  // order. Off (and empty) unless enabled.
  void recordWritesForTest() { record_writes_ = true; }
  std::vector<std::pair<int64_t, AddressRecord>> writesForTest() const;

 private:
  Status writeRecord(AddressRecord& r);
  Status putStatus(AddressRecord& r, const std::string& rv);
  void emitEvent(const AuditEvent& e);

  kube::Api& api_;
  Clock& clock_;
  std::string state_ns_;
  std::string instance_ = "nsegress-controller";
  std::function<std::string(const std::string&)> uid_of_;
  EventSender send_event_;
  std::function<void(const AddressRecord&)> on_assigned_;
  std::vector<StoredEvent> events_;
  bool record_writes_ = false;
  std::vector<std::pair<int64_t, AddressRecord>> writes_;
  std::vector<AuditEvent> mergedHistory() const;

  std::map<IpAddress, nlohmann::json> history_;    // status.history per address
  std::optional<std::vector<AuditEvent>> merged_;  // audit(): cached merge
  std::map<std::string, std::vector<nlohmann::json>> pending_history_;  // this commit's, by ip
  std::atomic<uint64_t> conflicts_{0};
  std::atomic<uint64_t> event_failures_{0};
  size_t skipped_ = 0;
  mutable std::mutex mu_;
  std::mutex data_mu_;  // history_, merged_, writes_ while a commit writes in parallel
};

}  // namespace nsegress::controller::cluster
