#include "nsegress/controller/store.h"

#include "nsegress/common/fd.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>

namespace nsegress::controller {

Status LedgerStore::commitBlocks(const BlockPlan& plan) {
  if (plan.empty()) return okStatus();
  return makeError(ENOTSUP, "this ledger keeps no port blocks");
}

Result<std::vector<PortBlock>> LedgerStore::blocksCovering(const IpAddress&, uint16_t, Seconds) {
  return std::vector<PortBlock>{};
}

Result<BlockBook> MemoryStore::loadBlocks() {
  BlockBook book;
  for (const auto& b : blocks) {
    if (b.held())
      book.held.push_back(b);
    else
      book.last_closed[{b.egress, b.first}] = std::max(book.last_closed[{b.egress, b.first}], b.to);
  }
  return book;
}

Status MemoryStore::commitBlocks(const BlockPlan& plan) {
  if (plan.empty()) return okStatus();
  if (fail_next_commit) {
    fail_next_commit = false;
    return makeError(EIO, "memory store: commit failed (test)");
  }
  for (const auto& c : plan.closed)
    for (auto& b : blocks)
      if (b.held() && b.egress == c.egress && b.first == c.first && b.from == c.from &&
          b.pod == c.pod)
        b.to = c.to;
  blocks.insert(blocks.end(), plan.opened.begin(), plan.opened.end());
  return okStatus();
}

Result<std::vector<PortBlock>> MemoryStore::blocksCovering(const IpAddress& egress, uint16_t port,
                                                           Seconds at) {
  std::vector<PortBlock> out;
  for (const auto& b : blocks)
    if (b.egress == egress && b.first <= port && port <= b.last && b.from <= at &&
        (b.held() || b.to > at))
      out.push_back(b);
  return out;
}

Result<std::vector<AuditEvent>> LedgerStore::history(const IpAddress& ip) {
  std::vector<AuditEvent> out;
  const std::string key = ip.str();
  for (int64_t since = 0;;) {
    auto page = audit(since, 10000);
    if (!page) return page.error();
    if (page->empty()) break;
    for (const auto& e : *page)
      if (e.event.ip == key) out.push_back(e.event);
    since = page->back().id;
  }
  return out;
}

Result<std::vector<StoredEvent>> LedgerStore::recent(size_t limit) {
  std::deque<StoredEvent> tail;
  for (int64_t since = 0;;) {
    auto page = audit(since, 10000);
    if (!page) return page.error();
    if (page->empty()) break;
    for (auto& e : *page) {
      tail.push_back(std::move(e));
      if (tail.size() > limit) tail.pop_front();
    }
    since = tail.empty() ? since + 10000 : tail.back().id;
  }
  return std::vector<StoredEvent>(tail.begin(), tail.end());
}

// ---- MemoryStore ---------------------------------------------------------------

Status MemoryStore::commit(std::vector<AddressRecord>& changed, const std::vector<AuditEvent>& evs,
                           const std::map<std::string, std::string>& meta) {
  if (fail_next_commit) {
    fail_next_commit = false;
    return makeError(EIO, "memory store: injected commit failure");
  }
  Ledger next = ledger;
  for (const auto& r : changed) next[r.ip] = r;
  std::map<std::string, IpAddress> owner;
  for (const auto& [ip, r] : next) {
    if (r.state != AddressState::kAssigned) continue;
    if (!owner.emplace(r.ns, ip).second)
      return makeError(EEXIST, "memory store: namespace " + r.ns + " would hold two addresses");
  }
  ledger = std::move(next);
  for (const auto& e : evs) events.push_back({static_cast<int64_t>(events.size()) + 1, e});
  for (const auto& [k, v] : meta) metas[k] = v;
  return okStatus();
}

Result<std::vector<StoredEvent>> MemoryStore::audit(int64_t since, size_t limit) {
  std::vector<StoredEvent> out;
  for (const auto& e : events)
    if (e.id > since && out.size() < limit) out.push_back(e);
  return out;
}

Result<std::optional<std::string>> MemoryStore::meta(const std::string& key) {
  auto it = metas.find(key);
  return it == metas.end() ? std::optional<std::string>() : std::optional<std::string>(it->second);
}

// ---- SqliteStore ---------------------------------------------------------------

namespace {
using DbPtr = Handle<sqlite3, sqlite3_close_v2>;
using StmtPtr = Handle<sqlite3_stmt, sqlite3_finalize>;

#define NSEGRESS_ADDRESSES_COLUMNS                                              \
  "(ip TEXT PRIMARY KEY, pool TEXT NOT NULL, "                                  \
  "state TEXT NOT NULL CHECK (state IN "                                        \
  "('Assigned','PendingFirewallCleanup','Quarantined','Free')), "               \
  "namespace TEXT NOT NULL, node TEXT NOT NULL, assigned_at INTEGER NOT NULL, " \
  "released_at INTEGER NOT NULL, quarantine_until INTEGER NOT NULL, "           \
  "usable_at INTEGER NOT NULL DEFAULT 0)"

constexpr const char* kSchema =
    "PRAGMA journal_mode=WAL;\n"
    "PRAGMA synchronous=FULL;\n"
    "CREATE TABLE IF NOT EXISTS addresses" NSEGRESS_ADDRESSES_COLUMNS
    ";\n"
    R"sql(
CREATE UNIQUE INDEX IF NOT EXISTS one_address_per_namespace ON addresses(namespace) WHERE state = 'Assigned';
CREATE TABLE IF NOT EXISTS audit(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, ip TEXT NOT NULL,
  pool TEXT NOT NULL, node TEXT NOT NULL, message TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_ip ON audit(ip, id);
CREATE TABLE IF NOT EXISTS port_blocks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  egress TEXT NOT NULL, first_port INTEGER NOT NULL, last_port INTEGER NOT NULL,
  namespace TEXT NOT NULL, pod TEXT NOT NULL, pod_ip TEXT NOT NULL,
  held_from INTEGER NOT NULL, held_to INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS one_holder_per_block ON port_blocks(egress, first_port)
  WHERE held_to = 0;
CREATE INDEX IF NOT EXISTS port_blocks_by_port ON port_blocks(egress, first_port, held_from);
CREATE TRIGGER IF NOT EXISTS port_blocks_no_delete BEFORE DELETE ON port_blocks
  BEGIN SELECT RAISE(ABORT, 'port blocks are append-only'); END;
CREATE TRIGGER IF NOT EXISTS port_blocks_close_once BEFORE UPDATE ON port_blocks
  WHEN OLD.held_to != 0 OR NEW.held_to = 0 OR NEW.egress != OLD.egress
    OR NEW.first_port != OLD.first_port OR NEW.last_port != OLD.last_port
    OR NEW.namespace != OLD.namespace OR NEW.pod != OLD.pod OR NEW.pod_ip != OLD.pod_ip
    OR NEW.held_from != OLD.held_from
  BEGIN SELECT RAISE(ABORT, 'a port block is only ever closed, once'); END;
)sql";

// A ledger of an earlier version (no PendingFirewallCleanup state, no
// usable_at): the table is rebuilt in one transaction, rows kept as they are.
constexpr const char* kMigrateV1 =
    "BEGIN IMMEDIATE;\n"
    "CREATE TABLE addresses_v2" NSEGRESS_ADDRESSES_COLUMNS
    ";\n"
    "INSERT INTO addresses_v2(ip, pool, state, namespace, node, assigned_at, released_at, "
    "quarantine_until) SELECT ip, pool, state, namespace, node, assigned_at, released_at, "
    "quarantine_until FROM addresses;\n"
    "DROP TABLE addresses;\n"
    "ALTER TABLE addresses_v2 RENAME TO addresses;\n"
    "CREATE UNIQUE INDEX one_address_per_namespace ON addresses(namespace) WHERE state = "
    "'Assigned';\n"
    "COMMIT;";
#undef NSEGRESS_ADDRESSES_COLUMNS

Error dbError(sqlite3* db, const std::string& what) {
  return makeError(EIO, "ledger: " + what + ": " + sqlite3_errmsg(db));
}

// Rows of (id, at, kind, namespace, ip, pool, node, message).
Result<std::vector<StoredEvent>> readEvents(sqlite3_stmt* st, sqlite3* db) {
  std::vector<StoredEvent> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    auto col = [&](int i) {
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, i)));
    };
    out.push_back(
        {sqlite3_column_int64(st, 0),
         AuditEvent{sqlite3_column_int64(st, 1), col(2), col(3), col(4), col(5), col(6), col(7)}});
  }
  if (rc != SQLITE_DONE) return dbError(db, "read audit");
  return out;
}
}  // namespace

struct SqliteStore::Impl {
  Fd lock;  // flock(LOCK_EX) on the ledger file while this store is open
  DbPtr db;
  // A second, read-only connection for the audit log: readers on other
  // threads (the HTTP API's slow handlers) see the last committed state,
  // never a commit in progress on `db` (WAL: they do not block it either).
  DbPtr reader;
  std::string path;
  Result<StmtPtr> prepare(const char* sql, sqlite3* on = nullptr) {
    sqlite3* d = on ? on : db.get();
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(d, sql, -1, &s, nullptr) != SQLITE_OK) return dbError(d, "prepare");
    return StmtPtr(s);
  }
  Status exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "?";
      sqlite3_free(err);
      return makeError(EIO, "ledger: " + m);
    }
    return okStatus();
  }
};

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path, SqliteOptions o) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  // A ledger is created only when asked: a missing or emptied file over an
  // existing deployment must not become a fresh ledger (every namespace
  // would get a new address and quarantines would be forgotten).
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if ((!exists || st.st_size == 0) && !o.create)
    return makeError(ENOENT, "ledger " + path + (exists ? " is empty" : " does not exist") +
                                 ": refusing to start from an empty ledger; for a new "
                                 "installation start once with --init-ledger");
  if (exists && !S_ISREG(st.st_mode))
    return makeError(EINVAL, "ledger " + path + ": not a regular file");
  impl->lock.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!impl->lock) return makeError(errno, "ledger " + path + ": " + strerror(errno));
  if (flock(impl->lock.get(), LOCK_EX | LOCK_NB) != 0)
    return makeError(errno == EWOULDBLOCK ? EBUSY : errno,
                     "ledger " + path + " is in use by another controller (locked)");
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  impl->db.reset(db);
  if (rc != SQLITE_OK)
    return makeError(EIO, "ledger " + path + ": " + (db ? sqlite3_errmsg(db) : "cannot open"));
  sqlite3_busy_timeout(db, 5000);
  // A damaged file is refused, not repaired by guessing.
  {
    auto check = impl->prepare("PRAGMA quick_check");
    if (!check) return makeError(EIO, "ledger " + path + " is damaged: " + check.error().message);
    std::string verdict;
    if (sqlite3_step(check->get()) == SQLITE_ROW && sqlite3_column_text(check->get(), 0))
      verdict = reinterpret_cast<const char*>(sqlite3_column_text(check->get(), 0));
    if (verdict != "ok")
      return makeError(EIO, "ledger " + path +
                                " is damaged: " + (verdict.empty() ? sqlite3_errmsg(db) : verdict));
  }
  // An existing ledger must be one (its tables present); creating them is
  // initialisation, which is explicit.
  if (!o.create) {
    auto t = impl->prepare(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
        "('addresses','audit','meta')");
    if (!t || sqlite3_step(t->get()) != SQLITE_ROW || sqlite3_column_int(t->get(), 0) != 3)
      return makeError(EINVAL, "ledger " + path +
                                   " is not an nsegress ledger (tables missing): refusing to "
                                   "initialise it implicitly; use --init-ledger for a new one");
  }
  if (auto r = impl->exec(kSchema); !r) return r.error();
  {
    auto t = impl->prepare("SELECT sql FROM sqlite_master WHERE type='table' AND name='addresses'");
    if (!t || sqlite3_step(t->get()) != SQLITE_ROW || !sqlite3_column_text(t->get(), 0))
      return makeError(EIO, "ledger " + path + ": cannot read its schema");
    const std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(t->get(), 0));
    t = makeError(0, "");  // finalized before the migration
    if (sql.find("usable_at") == std::string::npos) {
      if (auto r = impl->exec(kMigrateV1); !r) {
        (void)impl->exec("ROLLBACK");
        return makeError(EIO, "ledger " + path + ": migration failed: " + r.error().message);
      }
    }
  }
  sqlite3* reader = nullptr;
  rc =
      sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
  impl->reader.reset(reader);
  if (rc != SQLITE_OK)
    return makeError(
        EIO, "ledger " + path + " (reader): " + (reader ? sqlite3_errmsg(reader) : "cannot open"));
  sqlite3_busy_timeout(reader, 5000);
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqliteStore::~SqliteStore() = default;

Result<Ledger> SqliteStore::load() {
  auto st = impl_->prepare(
      "SELECT ip, pool, state, namespace, node, assigned_at, released_at, quarantine_until, "
      "usable_at FROM addresses");
  if (!st) return st.error();
  Ledger out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    auto col = [&](int i) {
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st->get(), i)));
    };
    auto ip = IpAddress::parse(col(0));
    auto state = addressStateFrom(col(2));
    if (!ip || !state)
      return makeError(EINVAL, "ledger " + impl_->path + ": corrupt row for " + col(0));
    out[*ip] = AddressRecord{*ip,
                             col(1),
                             *state,
                             col(3),
                             col(4),
                             sqlite3_column_int64(st->get(), 5),
                             sqlite3_column_int64(st->get(), 6),
                             sqlite3_column_int64(st->get(), 7),
                             sqlite3_column_int64(st->get(), 8)};
  }
  if (rc != SQLITE_DONE) return dbError(impl_->db.get(), "load");
  return out;
}

Status SqliteStore::commit(std::vector<AddressRecord>& changed,
                           const std::vector<AuditEvent>& events,
                           const std::map<std::string, std::string>& meta) {
  if (auto r = impl_->exec("BEGIN IMMEDIATE"); !r) return r;
  // Statements live inside `write`, so they are finalized before COMMIT.
  auto write = [&]() -> Status {
    auto up = impl_->prepare(
        "INSERT INTO addresses(ip, pool, state, namespace, node, assigned_at, released_at, "
        "quarantine_until, usable_at) "
        "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(ip) DO UPDATE SET pool=excluded.pool, "
        "state=excluded.state, "
        "namespace=excluded.namespace, node=excluded.node, assigned_at=excluded.assigned_at, "
        "released_at=excluded.released_at, quarantine_until=excluded.quarantine_until, "
        "usable_at=excluded.usable_at");
    if (!up) return up.error();
    // Releases before assignments: the per-namespace unique index is checked
    // per statement, and a namespace moving addresses releases one first.
    std::vector<const AddressRecord*> ordered;
    for (const auto& r : changed)
      if (r.state != AddressState::kAssigned) ordered.push_back(&r);
    for (const auto& r : changed)
      if (r.state == AddressState::kAssigned) ordered.push_back(&r);
    for (const auto* r : ordered) {
      sqlite3_stmt* s = up->get();
      sqlite3_reset(s);
      const std::string ip = r->ip.str(), state = toString(r->state);
      sqlite3_bind_text(s, 1, ip.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 2, r->pool.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 3, state.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 4, r->ns.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 5, r->node.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 6, r->assigned_at);
      sqlite3_bind_int64(s, 7, r->released_at);
      sqlite3_bind_int64(s, 8, r->quarantine_until);
      sqlite3_bind_int64(s, 9, r->usable_at);
      if (sqlite3_step(s) != SQLITE_DONE) return dbError(impl_->db.get(), "write " + ip);
    }
    auto ev = impl_->prepare(
        "INSERT INTO audit(at, kind, namespace, ip, pool, node, message) VALUES(?,?,?,?,?,?,?)");
    if (!ev) return ev.error();
    for (const auto& e : events) {
      sqlite3_stmt* s = ev->get();
      sqlite3_reset(s);
      sqlite3_bind_int64(s, 1, e.at);
      sqlite3_bind_text(s, 2, e.kind.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 3, e.ns.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 4, e.ip.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 5, e.pool.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 6, e.node.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 7, e.message.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s) != SQLITE_DONE) return dbError(impl_->db.get(), "append audit");
    }
    auto mt = impl_->prepare(
        "INSERT INTO meta(key, value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET "
        "value=excluded.value");
    if (!mt) return mt.error();
    for (const auto& [k, v] : meta) {
      sqlite3_stmt* s = mt->get();
      sqlite3_reset(s);
      sqlite3_bind_text(s, 1, k.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 2, v.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s) != SQLITE_DONE) return dbError(impl_->db.get(), "write meta");
    }
    return okStatus();
  };
  if (auto r = write(); !r) {
    (void)impl_->exec("ROLLBACK");  // best effort: the commit error is what matters
    return r;
  }
  if (auto r = impl_->exec("COMMIT"); !r) {
    (void)impl_->exec("ROLLBACK");  // best effort: the commit error is what matters
    return r;
  }
  return okStatus();
}

Result<std::vector<StoredEvent>> SqliteStore::audit(int64_t since, size_t limit) {
  auto st = impl_->prepare(
      "SELECT id, at, kind, namespace, ip, pool, node, message FROM audit WHERE id > ? ORDER BY id "
      "LIMIT ?",
      impl_->reader.get());
  if (!st) return st.error();
  sqlite3_bind_int64(st->get(), 1, since);
  sqlite3_bind_int64(st->get(), 2, static_cast<int64_t>(limit));
  return readEvents(st->get(), impl_->reader.get());
}

Result<std::vector<StoredEvent>> SqliteStore::recent(size_t limit) {
  auto st = impl_->prepare(
      "SELECT id, at, kind, namespace, ip, pool, node, message FROM audit ORDER BY id DESC "
      "LIMIT ?",
      impl_->reader.get());
  if (!st) return st.error();
  sqlite3_bind_int64(st->get(), 1, static_cast<int64_t>(limit));
  auto out = readEvents(st->get(), impl_->reader.get());
  if (out) std::reverse(out->begin(), out->end());
  return out;
}

Result<std::vector<AuditEvent>> SqliteStore::history(const IpAddress& ip) {
  // Uses the audit(ip) index: one address's events, not the whole log.
  auto st = impl_->prepare(
      "SELECT at, kind, namespace, ip, pool, node, message FROM audit WHERE ip = ? ORDER BY id",
      impl_->reader.get());
  if (!st) return st.error();
  const std::string key = ip.str();
  sqlite3_bind_text(st->get(), 1, key.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<AuditEvent> out;
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    auto col = [&](int i) {
      const auto* t = sqlite3_column_text(st->get(), i);
      return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    };
    out.push_back(AuditEvent{sqlite3_column_int64(st->get(), 0), col(1), col(2), col(3), col(4),
                             col(5), col(6)});
  }
  if (rc != SQLITE_DONE) return dbError(impl_->reader.get(), "read history");
  return out;
}

namespace {
Result<std::vector<PortBlock>> readBlocks(sqlite3_stmt* st, sqlite3* db, const std::string& path) {
  std::vector<PortBlock> out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    auto col = [&](int i) {
      const auto* t = sqlite3_column_text(st, i);
      return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
    };
    auto egress = IpAddress::parse(col(0));
    auto pod_ip = IpAddress::parse(col(5));
    const int64_t first = sqlite3_column_int64(st, 1), last = sqlite3_column_int64(st, 2);
    if (!egress || !pod_ip || first < 1 || last > 65535 || first > last)
      return makeError(EINVAL, "ledger " + path + ": corrupt port block of " + col(0));
    out.push_back(PortBlock{*egress, static_cast<uint16_t>(first), static_cast<uint16_t>(last),
                            col(3), col(4), *pod_ip, sqlite3_column_int64(st, 6),
                            sqlite3_column_int64(st, 7)});
  }
  if (rc != SQLITE_DONE) return dbError(db, "read port blocks");
  return out;
}
constexpr const char* kBlockColumns =
    "SELECT egress, first_port, last_port, namespace, pod, pod_ip, held_from, held_to FROM "
    "port_blocks ";
}  // namespace

Result<BlockBook> SqliteStore::loadBlocks() {
  BlockBook book;
  {
    auto st = impl_->prepare((std::string(kBlockColumns) + "WHERE held_to = 0").c_str());
    if (!st) return st.error();
    auto held = readBlocks(st->get(), impl_->db.get(), impl_->path);
    if (!held) return held.error();
    book.held = std::move(*held);
  }
  auto st = impl_->prepare(
      "SELECT egress, first_port, max(held_to) FROM port_blocks WHERE held_to != 0 GROUP BY "
      "egress, first_port");
  if (!st) return st.error();
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    const auto* t = sqlite3_column_text(st->get(), 0);
    auto egress = IpAddress::parse(t ? reinterpret_cast<const char*>(t) : "");
    if (!egress) return makeError(EINVAL, "ledger " + impl_->path + ": corrupt port block");
    book.last_closed[{*egress, static_cast<uint16_t>(sqlite3_column_int64(st->get(), 1))}] =
        sqlite3_column_int64(st->get(), 2);
  }
  if (rc != SQLITE_DONE) return dbError(impl_->db.get(), "read port blocks");
  return book;
}

Status SqliteStore::commitBlocks(const BlockPlan& plan) {
  if (plan.empty()) return okStatus();
  if (auto r = impl_->exec("BEGIN IMMEDIATE"); !r) return r;
  auto write = [&]() -> Status {
    auto close = impl_->prepare(
        "UPDATE port_blocks SET held_to = ? WHERE egress = ? AND first_port = ? AND held_to = 0 "
        "AND held_from = ? AND pod = ?");
    if (!close) return close.error();
    for (const auto& b : plan.closed) {
      sqlite3_stmt* s = close->get();
      sqlite3_reset(s);
      const std::string e = b.egress.str();
      sqlite3_bind_int64(s, 1, b.to);
      sqlite3_bind_text(s, 2, e.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 3, b.first);
      sqlite3_bind_int64(s, 4, b.from);
      sqlite3_bind_text(s, 5, b.pod.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s) != SQLITE_DONE) return dbError(impl_->db.get(), "close port block");
      if (sqlite3_changes(impl_->db.get()) != 1)
        return makeError(EIO, "ledger: port block " + e + ":" + std::to_string(b.first) + " of " +
                                  b.pod + " is not held (the ledger changed under us)");
    }
    auto open = impl_->prepare(
        "INSERT INTO port_blocks(egress, first_port, last_port, namespace, pod, pod_ip, "
        "held_from) VALUES(?,?,?,?,?,?,?)");
    if (!open) return open.error();
    for (const auto& b : plan.opened) {
      sqlite3_stmt* s = open->get();
      sqlite3_reset(s);
      const std::string e = b.egress.str(), pip = b.pod_ip.str();
      sqlite3_bind_text(s, 1, e.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 2, b.first);
      sqlite3_bind_int64(s, 3, b.last);
      sqlite3_bind_text(s, 4, b.ns.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 5, b.pod.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(s, 6, pip.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 7, b.from);
      if (sqlite3_step(s) != SQLITE_DONE) return dbError(impl_->db.get(), "open port block");
    }
    return okStatus();
  };
  if (auto r = write(); !r) {
    (void)impl_->exec("ROLLBACK");
    return r;
  }
  if (auto r = impl_->exec("COMMIT"); !r) {
    (void)impl_->exec("ROLLBACK");
    return r;
  }
  return okStatus();
}

Result<std::vector<PortBlock>> SqliteStore::blocksCovering(const IpAddress& egress, uint16_t port,
                                                           Seconds at) {
  // The (egress, first_port, held_from) index: blocks start at most 32,256
  // ports below `port`; the time bounds keep a busy block's history unread.
  auto st = impl_->prepare((std::string(kBlockColumns) +
                            "WHERE egress = ? AND first_port <= ? AND first_port >= ? AND "
                            "last_port >= ? AND held_from <= ? AND (held_to = 0 OR held_to > ?) "
                            "ORDER BY held_from DESC LIMIT 4")
                               .c_str(),
                           impl_->reader.get());
  if (!st) return st.error();
  const std::string e = egress.str();
  sqlite3_bind_text(st->get(), 1, e.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st->get(), 2, port);
  sqlite3_bind_int64(st->get(), 3, int64_t(port) - int64_t(Pool::kMaxPortBlock));
  sqlite3_bind_int64(st->get(), 4, port);
  sqlite3_bind_int64(st->get(), 5, at);
  sqlite3_bind_int64(st->get(), 6, at);
  return readBlocks(st->get(), impl_->reader.get(), impl_->path);
}

Status SqliteStore::checkWritable() {
  if (auto r = impl_->exec("BEGIN IMMEDIATE"); !r)
    return makeError(EROFS, "ledger " + impl_->path + " cannot be written: " + r.error().message);
  return impl_->exec("ROLLBACK");
}

Result<std::optional<std::string>> SqliteStore::meta(const std::string& key) {
  auto st = impl_->prepare("SELECT value FROM meta WHERE key = ?");
  if (!st) return st.error();
  sqlite3_bind_text(st->get(), 1, key.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st->get()) == SQLITE_ROW)
    return std::optional<std::string>(
        reinterpret_cast<const char*>(sqlite3_column_text(st->get(), 0)));
  return std::optional<std::string>();
}

}  // namespace nsegress::controller
