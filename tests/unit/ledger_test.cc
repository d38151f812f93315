// The SQLite ledger: schema guarantees, and crash safety under kill -9.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "temp_dir.h"

#include "nsegress/controller/api.h"
#include "nsegress/controller/controller.h"

namespace nsegress::controller {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

using testing::TempDir;

AddressRecord rec(const char* a, AddressState st, const char* ns) {
  return AddressRecord{ip(a), "dmz", st, ns, "", 1, 0, 0};
}

TEST(SqliteStore, CommitLoadRoundTripAndAuditIsAppendOnly) {
  TempDir d;
  {
    auto s = SqliteStore::open(d.path + "/l.db", SqliteOptions{true});
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->commit({rec("203.0.113.10", AddressState::kAssigned, "a")},
                             {AuditEvent{1, "Assigned", "a", "203.0.113.10", "dmz", "", "x"}},
                             {{"k", "v"}}));
  }
  auto s = SqliteStore::open(d.path + "/l.db", SqliteOptions{true});
  ASSERT_TRUE(s);
  auto l = (*s)->load();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->at(ip("203.0.113.10")), rec("203.0.113.10", AddressState::kAssigned, "a"));
  EXPECT_EQ(*(*(*s)->meta("k")), "v");
  auto a = (*s)->audit(0, 10);
  ASSERT_TRUE(a);
  ASSERT_EQ(a->size(), 1u);
  sqlite3* raw = nullptr;
  sqlite3_open((d.path + "/l.db").c_str(), &raw);
  EXPECT_NE(sqlite3_exec(raw, "UPDATE audit SET namespace='forged'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_NE(sqlite3_exec(raw, "DELETE FROM audit", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
}

TEST(SqliteStore, SchemaRefusesTwoAddressesForOneNamespaceAndTheCommitChangesNothing) {
  TempDir d;
  auto s = SqliteStore::open(d.path + "/l.db", SqliteOptions{true});
  ASSERT_TRUE(s);
  ASSERT_TRUE((*s)->commit({rec("203.0.113.10", AddressState::kAssigned, "a")}, {}));
  auto r = (*s)->commit({rec("203.0.113.11", AddressState::kAssigned, "a"),
                         rec("203.0.113.12", AddressState::kAssigned, "b")},
                        {AuditEvent{2, "Assigned", "a", "203.0.113.11", "dmz", "", ""}});
  ASSERT_FALSE(r);
  auto l = (*s)->load();
  EXPECT_EQ(l->size(), 1u) << "the whole transaction rolled back";
  EXPECT_TRUE((*s)->audit(0, 10)->empty());
  // A move (release + assign) in one commit is fine: releases are written first.
  EXPECT_TRUE((*s)->commit({rec("203.0.113.11", AddressState::kAssigned, "a"),
                            rec("203.0.113.10", AddressState::kQuarantined, "a")},
                           {}));
}

TEST(SqliteStore, UnusableFileIsAClearError) {
  TempDir d;
  auto s = SqliteStore::open(d.path + "/missing-dir/l.db");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("missing-dir/l.db"), std::string::npos);
  std::ofstream(d.path + "/garbage.db")
      << "this is not a database, just some text that is long enough";
  auto g = SqliteStore::open(d.path + "/garbage.db");
  ASSERT_FALSE(g);
}

// A ledger is never created implicitly over an existing deployment.
TEST(SqliteStore, AMissingOrEmptiedLedgerIsRefusedUnlessInitialisationIsAsked) {
  TempDir d;
  const std::string path = d.path + "/l.db";
  auto missing = SqliteStore::open(path);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("--init-ledger"), std::string::npos)
      << missing.error().message;
  EXPECT_FALSE(std::filesystem::exists(path)) << "nothing created";
  {
    auto s = SqliteStore::open(path, SqliteOptions{true});
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->commit({rec("203.0.113.1", AddressState::kAssigned, "pay")}, {}));
  }
  ASSERT_TRUE(SqliteStore::open(path)) << "an existing ledger opens without --init-ledger";
  std::filesystem::resize_file(path, 0);  // emptied
  std::filesystem::remove(path + "-wal");
  auto emptied = SqliteStore::open(path);
  ASSERT_FALSE(emptied);
  EXPECT_NE(emptied.error().message.find("is empty"), std::string::npos);
  // Another SQLite file (not a ledger) is not turned into one.
  {
    sqlite3* db = nullptr;
    sqlite3_open((d.path + "/other.db").c_str(), &db);
    sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto other = SqliteStore::open(d.path + "/other.db");
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("not an nsegress ledger"), std::string::npos);
}

TEST(SqliteStore, ASecondControllerOnTheSameLedgerIsRefused) {
  TempDir d;
  const std::string path = d.path + "/l.db";
  auto first = SqliteStore::open(path, SqliteOptions{true});
  ASSERT_TRUE(first);
  auto second = SqliteStore::open(path);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EBUSY);
  EXPECT_NE(second.error().message.find("in use by another controller"), std::string::npos);
  first->reset();
  EXPECT_TRUE(SqliteStore::open(path)) << "the lock goes with the first";
}

TEST(SqliteStore, ADamagedLedgerIsRefused) {
  TempDir d;
  const std::string path = d.path + "/l.db";
  {
    auto s = SqliteStore::open(path, SqliteOptions{true});
    ASSERT_TRUE(s);
    std::vector<AddressRecord> many;
    for (uint32_t i = 0; i < 2000; ++i)
      many.push_back(AddressRecord{IpAddress::v4(0xCB007100u + i), "dmz",
                                   AddressState::kQuarantined, "ns" + std::to_string(i), "", 1, 2,
                                   3});
    ASSERT_TRUE((*s)->commit(many, {}));
  }
  // Scribble over the middle of the file (a table's pages).
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(path) / 2));
    const std::string junk(8192, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto s = SqliteStore::open(path);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("damaged"), std::string::npos) << s.error().message;
}

// A store that cannot take a commit: the controller is not ready, and says why.
class UnwritableStore final : public LedgerStore {
 public:
  Result<Ledger> load() override { return Ledger{}; }
  using LedgerStore::commit;
  Status commit(std::vector<AddressRecord>&, const std::vector<AuditEvent>&,
                const std::map<std::string, std::string>&) override {
    return makeError(EROFS, "attempt to write a readonly database");
  }
  Result<std::vector<StoredEvent>> audit(int64_t, size_t) override {
    return std::vector<StoredEvent>{};
  }
  Result<std::optional<std::string>> meta(const std::string&) override {
    return std::optional<std::string>();
  }
  Status checkWritable() override { return makeError(EROFS, "ledger x cannot be written"); }
};

TEST(Controller, ALedgerThatCannotBeWrittenMakesItNotReady) {
  UnwritableStore store;
  Controller c(
      store, [] { return Seconds{1'800'000'000}; }, "");
  ASSERT_TRUE(c.start());
  EXPECT_NE(c.view()->not_ready.find("cannot be written"), std::string::npos);
  World w;
  Pool p;
  p.name = "dmz";
  p.ranges = {{ip("203.0.113.1"), ip("203.0.113.9")}};
  w.pools["dmz"] = p;
  w.nodes["gw"] = Node{"gw", {}, true};
  w.namespaces["pay"] = Namespace{"pay", {}, {{kPoolAnnotation, "dmz"}}};
  EXPECT_FALSE(c.reconcile(w));
  EXPECT_NE(c.view()->not_ready.find("could not be recorded"), std::string::npos);
  auto ready = handleRequest(ApiContext::fixed(c.view()), "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("readonly"), std::string::npos) << ready.body;
}

// ---- crash safety -------------------------------------------------------------

constexpr Seconds kT0 = 1'800'000'000;
constexpr Seconds kStep = 3600;  // one hour of ledger time per step
constexpr Seconds kQuarantine = 5 * kStep;
constexpr int kNamespaces = 12;

// The world at a step: a pool of 6 addresses (one excluded) too small for 12
// namespaces, churning annotations, specific-IP requests and deletions.
World worldAt(uint32_t seed, int step) {
  World w;
  Pool p;
  p.name = "dmz";
  p.ranges = {{ip("203.0.113.1"), ip("203.0.113.7")}};
  p.excluded = {{ip("203.0.113.4"), ip("203.0.113.4")}};
  p.quarantine = kQuarantine;
  w.pools["dmz"] = p;
  w.nodes["gw"] = Node{"gw", {}, true};
  for (int i = 0; i < kNamespaces; ++i) {
    // Each namespace's situation changes every few steps.
    std::mt19937 rng(seed * 7919u + static_cast<uint32_t>(i) * 104729u +
                     static_cast<uint32_t>(step / (2 + i % 3)));
    const int r = static_cast<int>(rng() % 10);
    const std::string name = "ns" + std::to_string(i);
    if (r < 2) continue;  // deleted
    Namespace ns{name, {}, {}};
    if (r < 7)
      ns.annotations[kPoolAnnotation] = "dmz";
    else if (r < 9)
      ns.annotations[kIpAnnotation] = "203.0.113." + std::to_string(1 + rng() % 7);
    w.namespaces[name] = ns;
  }
  return w;
}

// Runs steps [meta step + 1, last] against the ledger at `path`.
int runSteps(const std::string& path, uint32_t seed, int last) {
  auto store = SqliteStore::open(path, SqliteOptions{true});
  if (!store) return 2;
  int step = 0;
  if (auto m = (*store)->meta("step"); m && *m) step = std::stoi(**m);
  int current = step;
  Controller c(
      **store, [&] { return kT0 + current * kStep; }, "", ReleaseGuard::offForTest());
  if (!c.start()) return 3;
  for (current = step + 1; current <= last; ++current) {
    if (!c.reconcile(worldAt(seed, current))) return 4;
    if (!(*store)->commit({}, {}, {{"step", std::to_string(current)}})) return 5;
  }
  return 0;
}

// Replays the audit log; returns the first violation, or "".
std::string checkInvariants(LedgerStore& s) {
  auto ledger = s.load();
  if (!ledger) return "ledger unreadable: " + ledger.error().message;
  std::map<std::string, std::string> owner_of_ns;  // ns -> ip
  for (const auto& [a, r] : *ledger)
    if (r.state == AddressState::kAssigned && !owner_of_ns.emplace(r.ns, a.str()).second)
      return r.ns + " holds two addresses";
  struct Ip {
    std::string holder, quarantined_for;
    Seconds until = 0;
  };
  std::map<std::string, Ip> ips;
  std::map<std::string, std::string> holds;  // ns -> ip, replayed
  for (int64_t since = 0;;) {
    auto page = s.audit(since, 5000);
    if (!page) return "audit unreadable";
    if (page->empty()) break;
    since = page->back().id;
    for (const auto& se : *page) {
      const auto& e = se.event;
      auto& st = ips[e.ip];
      if (e.kind == "Assigned" || e.kind == "Reclaimed") {
        if (!st.holder.empty())
          return e.ip + " assigned to " + e.ns + " while held by " + st.holder;
        if (!st.quarantined_for.empty() && st.quarantined_for != e.ns && e.at < st.until)
          return e.ip + " given to " + e.ns + " during " + st.quarantined_for + "'s quarantine";
        if (holds.count(e.ns))
          return e.ns + " got " + e.ip + " while holding " + holds[e.ns] + " (moved silently)";
        st.holder = e.ns;
        st.quarantined_for.clear();
        holds[e.ns] = e.ip;
      } else if (e.kind == "Released") {
        if (st.holder != e.ns) return e.ip + " released by " + e.ns + " who did not hold it";
        st.holder.clear();
        st.quarantined_for = e.ns;
        st.until = e.at + kQuarantine;
        holds.erase(e.ns);
      } else if (e.kind == "QuarantineExpired") {
        if (e.at < st.until) return e.ip + " left quarantine early";
        st.quarantined_for.clear();
      }
    }
  }
  // Nothing lost: the ledger and the replayed history agree.
  for (const auto& [ns, a] : holds) {
    auto it = owner_of_ns.find(ns);
    if (it == owner_of_ns.end() || it->second != a)
      return "audit says " + ns + " holds " + a + "; the ledger disagrees";
  }
  if (holds.size() != owner_of_ns.size())
    return "ledger holds assignments the audit never recorded";
  return "";
}

class LedgerCrash : public ::testing::TestWithParam<uint32_t> {};

TEST_P(LedgerCrash, KillNineAtRandomPointsNeverBreaksTheInvariants) {
  const uint32_t seed = GetParam();
  constexpr int kSteps = 1000;
  TempDir d;
  const std::string path = d.path + "/ledger.db";
  std::mt19937 rng(seed);
  int kills = 0, last_step = 0;
  for (int attempt = 0; attempt < 5000; ++attempt) {
    pid_t pid = fork();
    if (pid == 0) _exit(runSteps(path, seed, kSteps));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    const bool finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) != 0)
        << "child failed: " << WEXITSTATUS(status);
    kills += !finished;
    auto store = SqliteStore::open(path, SqliteOptions{true});
    ASSERT_TRUE(store) << store.error().message;
    const std::string v = checkInvariants(**store);
    ASSERT_EQ(v, "") << "after kill " << kills;
    int step = 0;
    if (auto m = (*store)->meta("step"); m && *m) step = std::stoi(**m);
    ASSERT_GE(step, last_step) << "progress went backwards";
    last_step = step;
    if (finished || step == kSteps) break;
  }
  ASSERT_EQ(last_step, kSteps);
  EXPECT_GT(kills, 10) << "the test must actually interrupt the runs";

  // Nothing lost or changed by the kills: the same steps without interruption
  // give exactly the same ledger.
  MemoryStore ref;
  int current = 0;
  Controller c(
      ref, [&] { return kT0 + current * kStep; }, "", ReleaseGuard::offForTest());
  ASSERT_TRUE(c.start());
  for (current = 1; current <= kSteps; ++current) ASSERT_TRUE(c.reconcile(worldAt(seed, current)));
  auto store = SqliteStore::open(path, SqliteOptions{true});
  EXPECT_EQ(*(*store)->load(), ref.ledger);
  EXPECT_EQ(checkInvariants(ref), "");
  // The sequence exercised every transition the invariants are about.
  std::map<std::string, int> kinds;
  for (const auto& e : ref.events) kinds[e.event.kind]++;
  for (const char* k : {"Assigned", "Released", "Reclaimed", "QuarantineExpired", "Pending"})
    EXPECT_GT(kinds[k], 0) << k;
  std::cerr << "seed " << seed << ": " << kSteps << " steps, " << kills << " kill -9s, "
            << ref.events.size() << " events (" << kinds["Assigned"] << " assigned, "
            << kinds["Released"] << " released, " << kinds["Reclaimed"] << " reclaimed, "
            << kinds["QuarantineExpired"] << " quarantines expired)\n";
}

TEST(LedgerInvariants, TheCheckerCatchesForgedHistories) {
  MemoryStore s;
  auto ev = [](Seconds at, const char* kind, const char* ns) {
    return AuditEvent{at, kind, ns, "203.0.113.1", "dmz", "", ""};
  };
  ASSERT_TRUE(s.commit(
      {}, {ev(kT0, "Assigned", "a"), ev(kT0 + 1, "Released", "a"), ev(kT0 + 2, "Assigned", "b")}));
  EXPECT_NE(checkInvariants(s).find("during a's quarantine"), std::string::npos);
  MemoryStore t;
  ASSERT_TRUE(t.commit({}, {ev(kT0, "Assigned", "a"), ev(kT0 + 1, "Assigned", "b")}));
  EXPECT_NE(checkInvariants(t).find("while held by a"), std::string::npos);
  MemoryStore u;
  ASSERT_TRUE(u.commit({rec("203.0.113.2", AddressState::kAssigned, "c")}, {}));
  EXPECT_NE(checkInvariants(u).find("never recorded"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Seeds, LedgerCrash, ::testing::Values(1u, 2u, 3u, 4u));

}  // namespace
}  // namespace nsegress::controller
