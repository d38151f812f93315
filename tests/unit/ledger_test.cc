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

#include "nsegress/controller/controller.h"

namespace nsegress::controller {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

class TempDir {
 public:
  TempDir() {
    path = ::testing::TempDir() + "/nse-ledger-" + std::to_string(getpid()) + "-" +
           std::to_string(counter++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string path;
  static inline int counter = 0;
};

AddressRecord rec(const char* a, AddressState st, const char* ns) {
  return AddressRecord{ip(a), "dmz", st, ns, "", 1, 0, 0};
}

TEST(SqliteStore, CommitLoadRoundTripAndAuditIsAppendOnly) {
  TempDir d;
  {
    auto s = SqliteStore::open(d.path + "/l.db");
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->commit({rec("203.0.113.10", AddressState::kAssigned, "a")},
                             {AuditEvent{1, "Assigned", "a", "203.0.113.10", "dmz", "", "x"}},
                             {{"k", "v"}}));
  }
  auto s = SqliteStore::open(d.path + "/l.db");
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
  auto s = SqliteStore::open(d.path + "/l.db");
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
  auto store = SqliteStore::open(path);
  if (!store) return 2;
  int step = 0;
  if (auto m = (*store)->meta("step"); m && *m) step = std::stoi(**m);
  int current = step;
  Controller c(
      **store, [&] { return kT0 + current * kStep; }, "");
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
    auto store = SqliteStore::open(path);
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
      ref, [&] { return kT0 + current * kStep; }, "");
  ASSERT_TRUE(c.start());
  for (current = 1; current <= kSteps; ++current) ASSERT_TRUE(c.reconcile(worldAt(seed, current)));
  auto store = SqliteStore::open(path);
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
