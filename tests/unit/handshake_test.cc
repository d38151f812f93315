// The decommission handshake (PendingFirewallCleanup until the firewall side
// acknowledges a removal) and onboarding (published before used), through
// the pool spec, the allocator, the gateway states, the feeds, the
// controller, the API and the SQLite ledger.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "nsegress/controller/allocator.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/controller.h"
#include "nsegress/controller/feeds.h"
#include "nsegress/controller/manifests.h"
#include "nsegress/controller/store.h"

namespace nsegress::controller {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}
constexpr Seconds kT0 = 1'800'000'000;

const char* kPools = R"(
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: fw}
spec:
  addresses: ["203.0.113.10-203.0.113.12"]
  quarantine: 1d
  acknowledgeRemoval: true
  onboarding: 10m
---
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: plain}
spec:
  addresses: ["198.51.100.10-198.51.100.11"]
  quarantine: 1d
---
apiVersion: v1
kind: Node
metadata: {name: gw-a}
)";

World world(std::vector<std::pair<std::string, std::string>> ns_pool) {
  auto w = parseManifests(kPools, "pools.yaml");
  EXPECT_TRUE(w) << w.error().message;
  for (auto& [ns, pool] : ns_pool) w->namespaces[ns] = Namespace{ns, {}, {{kPoolAnnotation, pool}}};
  return *w;
}

std::string poolSpec(const std::string& extra) {
  return "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: p}\nspec:\n  "
         "addresses: [\"203.0.113.0/28\"]\n" +
         extra;
}

TEST(HandshakeSpec, FieldsAreStrict) {
  auto get = [](const std::string& extra) {
    auto w = parseManifests(poolSpec(extra), "p.yaml");
    EXPECT_TRUE(w) << w.error().message;
    return w->pools.at("p");
  };
  EXPECT_TRUE(get("  acknowledgeRemoval: true\n").acknowledge_removal);
  EXPECT_FALSE(get("  acknowledgeRemoval: false\n").acknowledge_removal);
  EXPECT_FALSE(get("").acknowledge_removal);
  for (const char* bad : {"  acknowledgeRemoval: yes\n", "  acknowledgeRemoval: 1\n",
                          "  acknowledgeRemoval: True\n", "  acknowledgeRemoval: [true]\n"}) {
    auto p = get(bad);
    ASSERT_TRUE(p.invalid) << bad;
    EXPECT_NE(p.invalid->find("acknowledgeRemoval"), std::string::npos) << *p.invalid;
  }
  EXPECT_EQ(get("  onboarding: 10m\n").onboarding, 600);
  EXPECT_EQ(get("  onboarding: 7d\n").onboarding, 7 * 86400);
  for (const char* bad : {"  onboarding: 8d\n", "  onboarding: soon\n", "  onboarding: -5m\n",
                          "  onboarding: 99999999999999999999d\n"}) {
    auto p = get(bad);
    ASSERT_TRUE(p.invalid) << bad;
    EXPECT_NE(p.invalid->find("onboarding"), std::string::npos) << *p.invalid;
  }
}

View viewOf(const World& w, const Allocation& a, Seconds at) {
  View v;
  v.ledger = a.ledger;
  v.namespaces = w.namespaces;
  v.pools = w.pools;
  v.statuses = a.statuses;
  v.at = at;
  v.reconciles = 1;
  return v;
}

std::string edl(const World& w, const Allocation& a, Seconds at, const std::string& pool) {
  auto f = renderFeed(viewOf(w, a, at), pool, std::nullopt, FeedFormat::kEdl);
  EXPECT_TRUE(f) << f.error().message;
  return f ? f->body : "";
}

TEST(Handshake, AReleasedAddressWaitsForTheFirewallThenQuarantine) {
  World w = world({{"pay", "fw"}, {"old", "plain"}});
  auto a = allocate(w, {}, kT0);
  const IpAddress pay = ip("203.0.113.10");
  ASSERT_EQ(a.ledger.at(pay).state, AddressState::kAssigned);
  // Decommission both.
  w.namespaces.erase("pay");
  w.namespaces.erase("old");
  a = allocate(w, a.ledger, kT0 + 100, a.statuses);
  EXPECT_EQ(a.ledger.at(pay).state, AddressState::kPendingFirewallCleanup);
  EXPECT_EQ(a.ledger.at(pay).quarantine_until, 0);
  EXPECT_EQ(a.ledger.at(ip("198.51.100.10")).state, AddressState::kQuarantined)
      << "a pool without the handshake quarantines at once";
  EXPECT_EQ(edl(w, a, kT0 + 100, "fw").find("203.0.113.10"), std::string::npos)
      << "out of the feed";
  // It waits as long as it takes: no clock moves it on; nobody else gets it.
  w.namespaces["new"] = Namespace{"new", {}, {{kIpAnnotation, "203.0.113.10"}}};
  a = allocate(w, a.ledger, kT0 + 30 * 86400, a.statuses);
  EXPECT_EQ(a.ledger.at(pay).state, AddressState::kPendingFirewallCleanup);
  EXPECT_EQ(a.statuses.at("new").phase, Phase::kPending);
  EXPECT_NE(a.statuses.at("new").reason.find("acknowledge its removal"), std::string::npos)
      << a.statuses.at("new").reason;
  // Acknowledged: quarantine starts now, for the pool's quarantine.
  const Seconds ack_at = kT0 + 30 * 86400 + 5;
  a = allocate(w, a.ledger, ack_at, a.statuses, {{pay, "panorama"}});
  EXPECT_EQ(a.ledger.at(pay).state, AddressState::kQuarantined);
  EXPECT_EQ(a.ledger.at(pay).quarantine_until, ack_at + 86400);
  ASSERT_FALSE(a.events.empty());
  EXPECT_EQ(a.events.front().kind, "RemovalAcknowledged");
  EXPECT_NE(a.events.front().message.find("panorama"), std::string::npos);
  EXPECT_EQ(a.statuses.at("new").phase, Phase::kPending) << "still in quarantine";
  // An acknowledgement of an address not pending changes nothing.
  auto again = allocate(w, a.ledger, ack_at + 1, a.statuses, {{pay, "panorama"}});
  EXPECT_EQ(again.ledger.at(pay), a.ledger.at(pay));
}

TEST(Handshake, TheSameNamespaceBackBeforeTheAckGetsItsAddressWithoutOnboarding) {
  World w = world({{"pay", "fw"}});
  auto a = allocate(w, {}, kT0);
  w.namespaces.erase("pay");
  a = allocate(w, a.ledger, kT0 + 1000, a.statuses);
  ASSERT_EQ(a.ledger.at(ip("203.0.113.10")).state, AddressState::kPendingFirewallCleanup);
  w.namespaces["pay"] = Namespace{"pay", {}, {{kPoolAnnotation, "fw"}}};
  a = allocate(w, a.ledger, kT0 + 2000, a.statuses);
  const auto& r = a.ledger.at(ip("203.0.113.10"));
  EXPECT_EQ(r.state, AddressState::kAssigned);
  EXPECT_EQ(r.ns, "pay");
  EXPECT_TRUE(r.usable(kT0 + 2000)) << "the firewall never removed it";
  EXPECT_EQ(a.statuses.at("pay").phase, Phase::kAssigned);
}

TEST(Handshake, AnInvalidPoolNeverSkipsTheHandshake) {
  World w = world({{"pay", "fw"}, {"old", "plain"}});
  auto a = allocate(w, {}, kT0);
  // A typo makes both pools invalid: their settings are unknown.
  w.pools.at("fw").invalid = "spec.acknowledgeRemoval: expected true or false";
  w.pools.at("plain").invalid = "spec.onboarding: too long";
  w.namespaces.clear();
  a = allocate(w, a.ledger, kT0 + 100, a.statuses);
  EXPECT_EQ(a.ledger.at(ip("203.0.113.10")).state, AddressState::kPendingFirewallCleanup);
  EXPECT_EQ(a.ledger.at(ip("198.51.100.10")).state, AddressState::kPendingFirewallCleanup)
      << "a quarantine of unknown length is not started";
}

TEST(Onboarding, PublishedFirstUsedLaterFailClosedMeanwhile) {
  World w = world({{"pay", "fw"}});
  auto a = allocate(w, {}, kT0);
  const auto& r = a.ledger.at(ip("203.0.113.10"));
  EXPECT_EQ(r.usable_at, kT0 + 600);
  EXPECT_EQ(a.statuses.at("pay").phase, Phase::kPending);
  EXPECT_NE(a.statuses.at("pay").reason.find("onboarding"), std::string::npos);
  EXPECT_NE(edl(w, a, kT0, "fw").find("203.0.113.10"), std::string::npos) << "in the feed now";
  auto early = gatewayStates(w, a, kT0 + 599);
  ASSERT_EQ(early.at("gw-a").namespaces.size(), 1u);
  EXPECT_FALSE(early.at("gw-a").namespaces[0].egress_v4) << "fail-closed while onboarding";
  EXPECT_EQ(nextOnboardingEnd(a.ledger, kT0), kT0 + 600);
  a = allocate(w, a.ledger, kT0 + 600, a.statuses);
  EXPECT_EQ(a.statuses.at("pay").phase, Phase::kAssigned);
  auto later = gatewayStates(w, a, kT0 + 600);
  EXPECT_EQ(later.at("gw-a").namespaces[0].egress_v4, ip("203.0.113.10"));
  EXPECT_FALSE(nextOnboardingEnd(a.ledger, kT0 + 600));
}

TEST(Handshake, ControllerAndApiTakeAnAcknowledgementOnlyForAPendingAddress) {
  MemoryStore store;
  Seconds now = kT0;
  Controller ctl(
      store, [&] { return now; }, "", ReleaseGuard::offForTest());
  ASSERT_TRUE(ctl.start());
  World w = world({{"pay", "fw"}});
  ASSERT_TRUE(ctl.reconcile(w));
  ApiContext ctx = ApiContext::fixed(nullptr);
  ctx.view = [&] { return ctl.view(); };
  ctx.acknowledge = [&](const IpAddress& a, const std::string& by) {
    return ctl.acknowledgeRemoval(a, by);
  };
  auto post = [&](const std::string& target) {
    HttpRequest r = HttpRequest::make("POST", target);
    r.peer = "127.0.0.1";
    r.headers.add("Host", "localhost");
    return apiRouter(ctx).dispatch(r);
  };
  EXPECT_EQ(post("/api/v1/ack?ip=203.0.113.10").status, 409) << "assigned, not pending";
  EXPECT_EQ(post("/api/v1/ack?ip=203.0.113.99").status, 404);
  EXPECT_EQ(post("/api/v1/ack?ip=banana").status, 400);
  EXPECT_EQ(post("/api/v1/ack").status, 400);
  EXPECT_EQ(post("/api/v1/ack?ip=203.0.113.10&ip=203.0.113.11").status, 400) << "which one?";
  EXPECT_EQ(post("/api/v1/ack?ip=203.0.113.10&force=1").status, 400);
  w.namespaces.erase("pay");
  now += 60;
  ASSERT_TRUE(ctl.reconcile(w));
  auto pend = handleRequest(ctx, "GET", "/api/v1/pending");
  ASSERT_EQ(pend.status, 200);
  auto j = nlohmann::json::parse(pend.body);
  ASSERT_EQ(j["firewallCleanup"].size(), 1u);
  EXPECT_EQ(j["firewallCleanup"][0]["ip"], "203.0.113.10");
  EXPECT_EQ(post("/api/v1/ack?ip=203.0.113.10").status, 202);
  EXPECT_EQ(ctl.view()->ledger.at(ip("203.0.113.10")).state, AddressState::kPendingFirewallCleanup)
      << "applied by the next reconcile, not by the API thread";
  now += 1;
  ASSERT_TRUE(ctl.reconcile(w));
  const auto& r = ctl.view()->ledger.at(ip("203.0.113.10"));
  EXPECT_EQ(r.state, AddressState::kQuarantined);
  EXPECT_EQ(r.quarantine_until, now + 86400);
  ASSERT_FALSE(store.events.empty());
  EXPECT_EQ(store.events.back().event.kind, "RemovalAcknowledged");
  EXPECT_NE(store.events.back().event.message.find("localhost"), std::string::npos);
}

TEST(Handshake, AnOlderSqliteLedgerIsMigratedWithEveryRowKept) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("nsegress-migrate-" + std::to_string(::getpid()) + ".db"))
                               .string();
  std::filesystem::remove(path);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const char* old = R"sql(
CREATE TABLE addresses(ip TEXT PRIMARY KEY, pool TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('Assigned','Quarantined','Free')),
  namespace TEXT NOT NULL, node TEXT NOT NULL, assigned_at INTEGER NOT NULL,
  released_at INTEGER NOT NULL, quarantine_until INTEGER NOT NULL);
CREATE UNIQUE INDEX one_address_per_namespace ON addresses(namespace) WHERE state = 'Assigned';
CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, kind TEXT NOT NULL,
  namespace TEXT NOT NULL, ip TEXT NOT NULL, pool TEXT NOT NULL, node TEXT NOT NULL,
  message TEXT NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO addresses VALUES('203.0.113.10','fw','Assigned','pay','gw-a',1800000000,0,0);
INSERT INTO addresses VALUES('203.0.113.11','fw','Quarantined','old','',1700000000,1790000000,1800000000);
)sql";
    ASSERT_EQ(sqlite3_exec(db, old, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  {
    auto s = SqliteStore::open(path);
    ASSERT_TRUE(s) << s.error().message;
    auto l = (*s)->load();
    ASSERT_TRUE(l) << l.error().message;
    ASSERT_EQ(l->size(), 2u);
    EXPECT_EQ(l->at(ip("203.0.113.10")).ns, "pay");
    EXPECT_EQ(l->at(ip("203.0.113.11")).quarantine_until, 1800000000);
    // The new state and field are stored and read back.
    AddressRecord r = l->at(ip("203.0.113.10"));
    r.state = AddressState::kPendingFirewallCleanup;
    AddressRecord n{ip("203.0.113.12"), "fw", AddressState::kAssigned, "new", "gw-a", kT0, 0, 0};
    n.usable_at = kT0 + 600;
    std::vector<AddressRecord> changed = {r, n};
    ASSERT_TRUE((*s)->commit(changed, {}));
  }
  auto s = SqliteStore::open(path);
  ASSERT_TRUE(s) << s.error().message;
  auto l = (*s)->load();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->at(ip("203.0.113.10")).state, AddressState::kPendingFirewallCleanup);
  EXPECT_EQ(l->at(ip("203.0.113.12")).usable_at, kT0 + 600);
  s = makeError(0, "");
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  std::filesystem::remove(path + "-shm");
}

}  // namespace
}  // namespace nsegress::controller
