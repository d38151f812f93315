// The ledger's storage, behind an interface: embedded SQLite in standalone
// mode (SqliteStore), the Kubernetes API in cluster mode (cluster/ledger_store.h), and
// an in-memory fake for unit tests (MemoryStore).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nsegress/controller/allocator.h"
#include "nsegress/controller/port_blocks.h"

namespace nsegress::controller {

struct StoredEvent {
  int64_t id = 0;
  AuditEvent event;
};

class LedgerStore {
 public:
  virtual ~LedgerStore() = default;
  virtual Result<Ledger> load() = 0;
  // One atomic commit: the changed records, the audit events, and meta values.
  // A versioned store checks each record's `version` and sets the new one.
  virtual Status commit(std::vector<AddressRecord>& changed, const std::vector<AuditEvent>& events,
                        const std::map<std::string, std::string>& meta = {}) = 0;
  Status commit(std::vector<AddressRecord>&& changed, const std::vector<AuditEvent>& events,
                const std::map<std::string, std::string>& meta = {}) {
    return commit(changed, events, meta);
  }
  // Audit entries with id > since, oldest first, at most `limit`.
  virtual Result<std::vector<StoredEvent>> audit(int64_t since, size_t limit) = 0;
  virtual Result<std::optional<std::string>> meta(const std::string& key) = 0;
  // The newest `limit` audit entries, oldest first (the web page). The
  // default pages through audit(); stores with an index do better.
  virtual Result<std::vector<StoredEvent>> recent(size_t limit);
  // Who held `ip` over time: its audit events, oldest first (who-had).
  // The default pages through audit(); stores with an index do better.
  virtual Result<std::vector<AuditEvent>> history(const IpAddress& ip);
  // Whether a commit could succeed now (a read-only or locked-out ledger
  // cannot take one: the controller is then not ready).
  virtual Status checkWritable() { return okStatus(); }
  // Port blocks (attribution by port): kept only by ledgers that can keep
  // every block for as long as the audit log (SQLite, memory); others say so.
  virtual bool keepsPortBlocks() const { return false; }
  virtual Result<BlockBook> loadBlocks() { return BlockBook{}; }
  virtual Status commitBlocks(const BlockPlan& plan);
  // The blocks (held or closed) of `egress` whose range covered `port` at
  // `at` (one, unless the ledger is damaged), found by index: a port's long
  // history of holders is never read whole.
  virtual Result<std::vector<PortBlock>> blocksCovering(const IpAddress& egress, uint16_t port,
                                                        Seconds at);
};

// Embedded SQLite: WAL journal, synchronous=FULL, one transaction per commit.
// The schema makes double ownership impossible: one row per address (primary
// key) and at most one Assigned address per namespace (partial unique index).
// The audit table is append-only (triggers refuse UPDATE and DELETE).
struct SqliteOptions {
  // Create a new, empty ledger when there is none. Never implicit: a missing
  // or emptied ledger file is an error otherwise, so an existing deployment
  // is never silently restarted from an empty ledger (`--init-ledger`).
  bool create = false;
};

class SqliteStore final : public LedgerStore {
 public:
  // Opens (or, with `create`, creates) the ledger, refuses a damaged one
  // (integrity check), and takes an exclusive lock on it: a second
  // controller on the same ledger is refused.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path, SqliteOptions o = {});
  ~SqliteStore() override;
  Result<Ledger> load() override;
  using LedgerStore::commit;
  Status commit(std::vector<AddressRecord>& changed, const std::vector<AuditEvent>& events,
                const std::map<std::string, std::string>& meta = {}) override;
  Result<std::vector<StoredEvent>> audit(int64_t since, size_t limit) override;
  Result<std::vector<StoredEvent>> recent(size_t limit) override;
  Result<std::optional<std::string>> meta(const std::string& key) override;
  Result<std::vector<AuditEvent>> history(const IpAddress& ip) override;
  Status checkWritable() override;
  bool keepsPortBlocks() const override { return true; }
  Result<BlockBook> loadBlocks() override;
  Status commitBlocks(const BlockPlan& plan) override;
  Result<std::vector<PortBlock>> blocksCovering(const IpAddress& egress, uint16_t port,
                                                Seconds at) override;

 private:
  struct Impl;
  explicit SqliteStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A fake for unit tests of pure logic. Same contract, in memory.
class MemoryStore final : public LedgerStore {
 public:
  Ledger ledger;
  std::vector<StoredEvent> events;
  std::map<std::string, std::string> metas;
  std::vector<PortBlock> blocks;  // every block, held and closed
  bool fail_next_commit = false;
  bool keepsPortBlocks() const override { return true; }
  Result<BlockBook> loadBlocks() override;
  Status commitBlocks(const BlockPlan& plan) override;
  Result<std::vector<PortBlock>> blocksCovering(const IpAddress& egress, uint16_t port,
                                                Seconds at) override;
  Result<Ledger> load() override { return ledger; }
  using LedgerStore::commit;
  Status commit(std::vector<AddressRecord>& changed, const std::vector<AuditEvent>& evs,
                const std::map<std::string, std::string>& meta = {}) override;
  Result<std::vector<StoredEvent>> audit(int64_t since, size_t limit) override;
  Result<std::optional<std::string>> meta(const std::string& key) override;
};

}  // namespace nsegress::controller
