#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nsegress/controller/allocator.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/manifests.h"

namespace nsegress::controller {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}
constexpr Seconds kT0 = 1'800'000'000;
constexpr Seconds kDay = 86400;

const char* kBase = R"(
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: dmz}
spec:
  addresses: ["203.0.113.10-203.0.113.13"]
  exclude: ["203.0.113.11"]
  namespaceSelector: {matchExpressions: [{key: tier, operator: In, values: [app]}]}
  nodeSelector: {matchLabels: {gateway: "true"}}
  quarantine: 7d
---
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: batch}
spec:
  addresses: ["198.51.100.64/30"]
---
apiVersion: v1
kind: Node
metadata: {name: gw-a, labels: {gateway: "true"}}
---
apiVersion: v1
kind: Node
metadata: {name: gw-b, labels: {gateway: "true"}}
)";

World base() {
  auto w = parseManifests(kBase, "base.yaml");
  EXPECT_TRUE(w) << w.error().message;
  return *w;
}

void addNs(World& w, const std::string& name, std::map<std::string, std::string> ann,
           Labels labels = {{"tier", "app"}}) {
  w.namespaces[name] = Namespace{name, std::move(labels), std::move(ann)};
}

// Runs the allocator like the controller does: ledger and statuses carried over.
struct Sim {
  Ledger ledger;
  std::map<std::string, NamespaceStatus> statuses;
  std::vector<AuditEvent> history;
  Allocation last;
  Allocation step(const World& w, Seconds now) {
    last = allocate(w, ledger, now, statuses);
    ledger = last.ledger;
    statuses = last.statuses;
    history.insert(history.end(), last.events.begin(), last.events.end());
    return last;
  }
  const NamespaceStatus& st(const std::string& ns) { return statuses.at(ns); }
};

TEST(Allocator, LowestFreeAddressSkippingExclusionsDeterministically) {
  World w = base();
  addNs(w, "b-second", {{kPoolAnnotation, "dmz"}});
  addNs(w, "a-first", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  EXPECT_EQ(s.st("a-first").ip, ip("203.0.113.10"));
  EXPECT_EQ(s.st("b-second").ip, ip("203.0.113.12")) << ".11 is excluded";
  EXPECT_EQ(s.st("a-first").node, "gw-a");
  EXPECT_EQ(s.st("b-second").node, "gw-b") << "least loaded gateway";
}

TEST(Allocator, StableAcrossRestartsAndReappliedManifests) {
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  const auto held = s.st("pay").ip;
  // A restart: a fresh allocator, the ledger from the store, no statuses.
  Sim restarted;
  restarted.ledger = s.ledger;
  addNs(w, "aaa", {{kPoolAnnotation, "dmz"}});  // sorts first; must not take pay's address
  restarted.step(w, kT0 + 10);
  EXPECT_EQ(restarted.st("pay").ip, held);
  EXPECT_EQ(restarted.st("aaa").ip, ip("203.0.113.12"));
  EXPECT_TRUE(restarted.step(w, kT0 + 20).changed.empty()) << "re-applied: nothing changes";
}

TEST(Allocator, PoolEditRemovingAHeldAddressKeepsItAndReportsTheConflict) {
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  ASSERT_EQ(s.st("pay").ip, ip("203.0.113.10"));
  w.pools["dmz"].ranges = {*parseAddressRange("203.0.113.12-203.0.113.13")};
  auto a = s.step(w, kT0 + 1);
  EXPECT_EQ(s.st("pay").phase, Phase::kAssigned);
  EXPECT_EQ(s.st("pay").ip, ip("203.0.113.10"));
  EXPECT_NE(s.st("pay").reason.find("no longer in pool dmz"), std::string::npos);
  ASSERT_EQ(a.events.size(), 1u);
  EXPECT_EQ(a.events[0].kind, "Conflict");
  EXPECT_TRUE(s.step(w, kT0 + 2).events.empty()) << "reported once, not on every reconcile";
}

TEST(Allocator, ReleaseQuarantinesThenFreesAndSameNamespaceGetsItBack) {
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  w.namespaces.erase("pay");
  auto a = s.step(w, kT0 + 100);
  const auto& r = s.ledger.at(ip("203.0.113.10"));
  EXPECT_EQ(r.state, AddressState::kQuarantined);
  EXPECT_EQ(r.ns, "pay") << "tombstone keeps the previous tenant";
  EXPECT_EQ(r.quarantine_until, kT0 + 100 + 7 * kDay);
  EXPECT_EQ(a.events[0].kind, "Released");
  // Another namespace asking for the pool, or for that very address, does not get it.
  addNs(w, "thief", {{kPoolAnnotation, "dmz"}});
  addNs(w, "sniper", {{kIpAnnotation, "203.0.113.10"}});
  s.step(w, kT0 + 200);
  EXPECT_EQ(s.st("thief").ip, ip("203.0.113.12"));
  EXPECT_EQ(s.st("sniper").phase, Phase::kPending);
  EXPECT_NE(s.st("sniper").reason.find("in quarantine until"), std::string::npos);
  // The same namespace, back within the quarantine, gets its old address.
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  auto back = s.step(w, kT0 + 300);
  EXPECT_EQ(s.st("pay").ip, ip("203.0.113.10"));
  EXPECT_TRUE(std::any_of(back.events.begin(), back.events.end(), [](const AuditEvent& e) {
    return e.kind == "Reclaimed" && e.ns == "pay";
  }));
}

TEST(Allocator, QuarantineExpiryFreesTheAddressForOthers) {
  World w = base();
  addNs(w, "old", {{kIpAnnotation, "203.0.113.10"}});
  Sim s;
  s.step(w, kT0);
  w.namespaces.at("old").annotations.clear();  // annotation removed: released too
  s.step(w, kT0 + 1);
  addNs(w, "new", {{kIpAnnotation, "203.0.113.10"}});
  s.step(w, kT0 + 7 * kDay);  // not yet: until = kT0 + 1 + 7d
  EXPECT_EQ(s.st("new").phase, Phase::kPending);
  s.step(w, kT0 + 1 + 7 * kDay);
  EXPECT_EQ(s.st("new").ip, ip("203.0.113.10"));
  EXPECT_EQ(whoHad(s.history, ip("203.0.113.10"), kT0), "old");
  EXPECT_EQ(whoHad(s.history, ip("203.0.113.10"), kT0 + 3 * kDay), std::nullopt);
  EXPECT_EQ(whoHad(s.history, ip("203.0.113.10"), kT0 + 8 * kDay), "new");
}

TEST(Allocator, GatewayFailureMovesTheAddressNotTheIp) {
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  ASSERT_EQ(s.st("pay").node, "gw-a");
  w.nodes["gw-a"].ready = false;
  auto a = s.step(w, kT0 + 1);
  EXPECT_EQ(s.st("pay").ip, ip("203.0.113.10"));
  EXPECT_EQ(s.st("pay").node, "gw-b");
  EXPECT_EQ(a.events.back().kind, "Moved");
  auto gws = gatewayStates(w, a, kT0 + 1);
  ASSERT_TRUE(gws.count("gw-b"));
  EXPECT_EQ(gws["gw-b"].namespaces[0].egress_v4, ip("203.0.113.10"));
  EXPECT_FALSE(gws["gw-a"].namespaces[0].egress_v4) << "fail-closed on the old gateway";
}

TEST(Allocator, TwoAddressesForOneNamespaceConvergeToOne) {
  // Split brain: two controllers with diverging views each assigned "pay" an
  // address. The next reconcile keeps the lower and quarantines the other
  // under pay (never handed to another namespace before its quarantine ends).
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  ASSERT_EQ(s.st("pay").ip, ip("203.0.113.10"));
  AddressRecord dup = s.ledger.at(ip("203.0.113.10"));
  dup.ip = ip("203.0.113.12");
  s.ledger[dup.ip] = dup;
  auto a = s.step(w, kT0 + 1);
  EXPECT_EQ(s.st("pay").ip, ip("203.0.113.10"));
  EXPECT_EQ(s.ledger.at(ip("203.0.113.10")).state, AddressState::kAssigned);
  const auto& q = s.ledger.at(ip("203.0.113.12"));
  EXPECT_EQ(q.state, AddressState::kQuarantined);
  EXPECT_EQ(q.ns, "pay");
  ASSERT_FALSE(a.events.empty());
  EXPECT_EQ(a.events[0].kind, "Released");
  EXPECT_NE(a.events[0].message.find("keeping 203.0.113.10"), std::string::npos);
  addNs(w, "shop", {{kPoolAnnotation, "dmz"}});
  s.step(w, kT0 + 2);
  EXPECT_EQ(s.st("shop").ip, ip("203.0.113.13")) << "not pay's quarantined address";
}

TEST(Allocator, PodAddressesThatAreNotThePodsOwnAreNeverTranslated) {
  // A finished pod keeps its podIP in status after the network plugin has
  // handed the address to a new pod, possibly of another namespace; a
  // host-network pod reports the node's address.
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  addNs(w, "shop", {{kPoolAnnotation, "dmz"}});
  auto pods = parseManifests(R"(
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: pay}
status: {phase: Succeeded, podIPs: [{ip: 10.1.0.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: new, namespace: shop}
status: {phase: Running, podIPs: [{ip: 10.1.0.5}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: pay}
spec: {hostNetwork: true}
status: {phase: Running, podIPs: [{ip: 198.51.100.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: pay}
status: {phase: Running, podIPs: [{ip: 10.1.0.7}, {ip: "fd00::7"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: racing, namespace: pay}
status: {phase: Pending, podIP: 10.1.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: racing, namespace: shop}
status: {phase: Running, podIP: 10.1.0.9}
)",
                             "pods.yaml");
  ASSERT_TRUE(pods) << pods.error().message;
  w.pods = pods->pods;
  Sim s;
  auto gws = gatewayStates(w, s.step(w, kT0), kT0);
  const auto& st = gws.at("gw-a");
  ASSERT_EQ(st.namespaces.size(), 2u);
  EXPECT_EQ(st.namespaces[0].name, "pay");
  EXPECT_EQ(st.namespaces[0].pod_ips, (std::vector<IpAddress>{ip("10.1.0.7"), ip("fd00::7")}))
      << "not the finished pod, not the host-network pod, not the address both claim";
  EXPECT_EQ(st.namespaces[1].pod_ips, (std::vector<IpAddress>{ip("10.1.0.5")}));
  // The state the gateway receives is valid (one owner per pod address).
  EXPECT_TRUE(parseDesiredState(serializeDesiredState(st))) << serializeDesiredState(st);
}

TEST(Allocator, PoolUsageCountsWhatTheLedgerHolds) {
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  addNs(w, "shop", {{kPoolAnnotation, "dmz"}});
  Sim s;
  s.step(w, kT0);
  w.namespaces.erase("shop");
  s.step(w, kT0 + 1);
  w.pools["batch"].invalid = "spec.addresses[0]: broken";
  auto u = poolUsage(w.pools, s.ledger);
  // dmz: .10-.13 minus .11 = 3 usable; pay holds one, shop's is quarantined.
  EXPECT_EQ(u["dmz"], (PoolUsage{3, 1, 0, 1, 1, ""}));
  EXPECT_EQ(u["batch"], (PoolUsage{0, 0, 0, 0, 0, "spec.addresses[0]: broken"}));
}

// ---- bad input: a reason on that namespace alone, nothing else changes -----

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    w = base();
    addNs(w, "good", {{kPoolAnnotation, "dmz"}});
    addNs(w, "owner", {{kPoolAnnotation, "batch"}});
    addNs(w, "gone", {{kIpAnnotation, "203.0.113.13"}});
    s.step(w, kT0);
    w.namespaces.erase("gone");  // 203.0.113.13 quarantined for "gone"
    s.step(w, kT0 + 1);
    before = s.ledger;
  }
  // Adds `name` with `ann`, reconciles, returns its status; checks that no
  // other namespace's address or status changed.
  NamespaceStatus tryNs(std::map<std::string, std::string> ann, Labels labels = {{"tier", "app"}}) {
    auto other = s.statuses;
    addNs(w, "victim", std::move(ann), std::move(labels));
    auto a = s.step(w, kT0 + 2);
    for (const auto& r : a.changed) EXPECT_EQ(r.ns, "victim") << "changed " << r.ip.str();
    for (const auto& [n, st] : other) {
      if (n != "victim") {
        EXPECT_EQ(s.statuses.at(n), st) << n;
      }
    }
    EXPECT_EQ(a.events.size(), 1u);
    EXPECT_EQ(a.events[0].ns, "victim");
    return s.st("victim");
  }
  World w;
  Sim s;
  Ledger before;
};

TEST_F(BadInput, MalformedAnnotation) {
  auto st = tryNs({{kIpAnnotation, "203.0.113.999"}});
  EXPECT_EQ(st.phase, Phase::kRefused);
  EXPECT_EQ(st.reason, "annotation nsegress.io/ip: \"203.0.113.999\" is not an IP address");
  st = tryNs({{kPoolAnnotation, "DMZ!"}});
  EXPECT_NE(st.reason.find("is not a valid pool name"), std::string::npos);
}

TEST_F(BadInput, BothAnnotationsConflicting) {
  auto st = tryNs({{kPoolAnnotation, "batch"}, {kIpAnnotation, "203.0.113.12"}});
  EXPECT_EQ(st.phase, Phase::kRefused);
  EXPECT_EQ(st.reason, "conflicting annotations: 203.0.113.12 is not in pool batch");
}

TEST_F(BadInput, AddressOutsideEveryPool) {
  auto st = tryNs({{kIpAnnotation, "192.0.2.1"}});
  EXPECT_EQ(st.phase, Phase::kRefused);
  EXPECT_EQ(st.reason, "192.0.2.1 is not in any EgressPool");
}

TEST_F(BadInput, AddressOwnedByAnotherNamespace) {
  // 198.51.100.64/30: .64 (network) and .67 (broadcast) are never handed
  // out; owner got .65.
  auto st = tryNs({{kIpAnnotation, "198.51.100.65"}});
  EXPECT_EQ(st.phase, Phase::kPending);
  EXPECT_EQ(st.reason, "198.51.100.65 is assigned to namespace owner");
  EXPECT_EQ(s.ledger.at(ip("198.51.100.65")).ns, "owner");
}

TEST_F(BadInput, AddressInQuarantineForAnotherNamespace) {
  auto st = tryNs({{kIpAnnotation, "203.0.113.13"}});
  EXPECT_EQ(st.phase, Phase::kPending);
  EXPECT_NE(st.reason.find("in quarantine until"), std::string::npos);
  EXPECT_NE(st.reason.find("released by namespace gone"), std::string::npos);
}

TEST_F(BadInput, ExhaustedPool) {
  addNs(w, "filler", {{kPoolAnnotation, "dmz"}});  // takes .12; .13 is quarantined
  s.step(w, kT0 + 2);
  auto st = tryNs({{kPoolAnnotation, "dmz"}});
  EXPECT_EQ(st.phase, Phase::kPending);
  EXPECT_EQ(st.reason, "pool dmz is exhausted: 2 assigned, 1 in quarantine, of 3 addresses");
}

TEST_F(BadInput, PoolTheNamespaceMayNotUse) {
  auto st = tryNs({{kPoolAnnotation, "dmz"}}, {{"tier", "untrusted"}});
  EXPECT_EQ(st.phase, Phase::kRefused);
  EXPECT_EQ(st.reason,
            "pool dmz does not allow namespace victim (label the namespace to match the pool's "
            "namespaceSelector, or ask for another pool)");
}

TEST_F(BadInput, UnknownPool) {
  auto st = tryNs({{kPoolAnnotation, "nosuch"}});
  EXPECT_EQ(st.phase, Phase::kPending);
  EXPECT_EQ(st.reason, "pool nosuch does not exist");
}

TEST_F(BadInput, InvalidPoolSpec) {
  auto bad = parseManifests(R"(
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: broken}
spec: {addresses: ["203.0.113.0/33"]}
)",
                            "broken.yaml");
  ASSERT_TRUE(bad) << "a bad spec does not fail the file: the pool is kept, marked invalid";
  w.pools["broken"] = bad->pools.at("broken");
  auto st = tryNs({{kPoolAnnotation, "broken"}});
  EXPECT_EQ(st.phase, Phase::kRefused);
  EXPECT_EQ(st.reason,
            "pool broken is invalid: spec.addresses[0]: \"203.0.113.0/33\" is not a CIDR, an "
            "address range or an address (fix EgressPool broken)");
}

TEST_F(BadInput, RefusedChangeKeepsTheHeldAddress) {
  w.namespaces.at("good").annotations[kPoolAnnotation] = "nosuch";
  auto a = s.step(w, kT0 + 2);
  EXPECT_EQ(s.st("good").phase, Phase::kAssigned);
  EXPECT_EQ(s.st("good").ip, ip("203.0.113.10"));
  EXPECT_NE(s.st("good").reason.find("cannot be satisfied"), std::string::npos);
  EXPECT_TRUE(a.changed.empty());
}

// ---- manifests ----------------------------------------------------------------

TEST(Manifests, ParseDurationsAndRanges) {
  EXPECT_EQ(parseDuration("7d"), 7 * kDay);
  EXPECT_EQ(parseDuration("1h30m"), 5400);
  EXPECT_EQ(parseDuration("90s"), 90);
  for (const char* bad : {"", "7", "h", "7w", "1h30", "-1h"})
    EXPECT_FALSE(parseDuration(bad)) << bad;
  EXPECT_TRUE(parseAddressRange("203.0.113.0/30"));
  EXPECT_TRUE(parseAddressRange("203.0.113.9-203.0.113.1") == std::nullopt);
  EXPECT_TRUE(parseAddressRange("2001:db8::/48") == std::nullopt)
      << "IPv6 pools are bounded to /64 or smaller";
  EXPECT_TRUE(parseAddressRange("2001:db8::/120"));
}

TEST(Manifests, StructuralErrorsNameTheDocumentAndField) {
  struct Case {
    std::string text, want;
  };
  for (const auto& c : std::vector<Case>{
           {"kind: [", "not valid YAML"},
           {"apiVersion: v1\nkind: Namespace\nmetadata: {}\n",
            "document 1: metadata.name: missing"},
           {"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\nkind: "
            "Namespace\nmetadata: {name: x}\n",
            "document 2: apiVersion: missing"},
           {"apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n",
            "metadata.name: \"Bad_Name\""},
           {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nstatus: {podIPs: [{ip: "
            "10.0.0.300}]}\n",
            "(Pod p): status.podIPs[0]"},
           {"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: [x]}\n",
            "metadata.labels: must be a map"},
       }) {
    auto r = parseManifests(c.text, "f.yaml");
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message.find(c.want), std::string::npos) << r.error().message;
  }
}

TEST(Manifests, SelectorOperators) {
  auto w = parseManifests(R"(
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: p}
spec:
  addresses: ["203.0.113.1"]
  namespaceSelector:
    matchLabels: {team: pay}
    matchExpressions:
    - {key: env, operator: NotIn, values: [dev]}
    - {key: approved, operator: Exists}
)",
                          "p.yaml");
  ASSERT_TRUE(w);
  const auto& sel = w->pools.at("p").namespace_selector;
  EXPECT_TRUE(sel.matches({{"team", "pay"}, {"env", "prod"}, {"approved", "yes"}}));
  EXPECT_FALSE(sel.matches({{"team", "pay"}, {"env", "dev"}, {"approved", "yes"}}));
  EXPECT_FALSE(sel.matches({{"team", "pay"}, {"env", "prod"}}));
  EXPECT_FALSE(sel.matches({{"team", "web"}, {"approved", "yes"}}));
}

TEST(Manifests, UnreadableOrBrokenFileKeepsItsLastGoodObjects) {
  const std::string dir = ::testing::TempDir() + "/nse-manifests-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& f, const std::string& t) {
    std::ofstream(dir + "/" + f) << t;
  };
  write("ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: pay, annotations: {nsegress.io/pool: "
        "dmz}}\n");
  write("other.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n");
  ManifestOptions o;
  o.settle = std::chrono::milliseconds(0);  // files written a moment ago count as complete
  ManifestDirectory md(dir, SystemClock::instance(), o);
  auto w = md.load();
  EXPECT_EQ(w.namespaces.size(), 2u);
  EXPECT_TRUE(md.errors().empty());
  write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: pay\n");  // typo
  w = md.load();
  EXPECT_TRUE(w.namespaces.count("pay")) << "a typo must not delete (and so release) the namespace";
  ASSERT_EQ(md.errors().size(), 1u);
  EXPECT_NE(md.errors()[0].message.find("ns.yaml"), std::string::npos);
  chmod((dir + "/ns.yaml").c_str(), 0);
  if (geteuid() != 0) {  // root reads anyway
    w = md.load();
    EXPECT_TRUE(w.namespaces.count("pay"));
  }
  std::filesystem::remove(dir + "/ns.yaml");
  w = md.load();
  EXPECT_FALSE(w.namespaces.count("pay")) << "a removed file removes its objects";
  EXPECT_TRUE(w.namespaces.count("web"));
  std::filesystem::remove_all(dir);
}

// ---- API ------------------------------------------------------------------------

TEST(Api, AReplicaThatIsNotServingNeverHandsOutAList) {
  // A standby (not the leader) has no loaded ledger: an empty feed would tell
  // a firewall to allow nobody. It answers 503 instead, and is not ready.
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  Sim s;
  auto a = s.step(w, kT0);
  auto v = std::make_shared<View>();
  auto standby = ApiContext::fixed(
      v, nullptr, [] { return std::string("m 1\n"); }, "not the leader");
  for (const char* t : {"/feeds/edl/dmz", "/feeds/assignments.json", "/api/v1/addresses",
                        "/api/v1/namespaces", "/api/v1/who-had?ip=203.0.113.10", "/readyz"}) {
    auto r = handleRequest(standby, "GET", t);
    EXPECT_EQ(r.status, 503) << t;
    EXPECT_NE(r.body.find("not the leader"), std::string::npos) << t;
  }
  EXPECT_EQ(handleRequest(standby, "GET", "/healthz").status, 200) << "alive, just not serving";
  EXPECT_EQ(handleRequest(standby, "GET", "/metrics").status, 200);
  auto starting = ApiContext::fixed(v);
  EXPECT_EQ(handleRequest(starting, "GET", "/readyz").status, 503) << "no reconcile yet";
  v->ledger = a.ledger;
  v->pools = w.pools;
  v->reconciles = 1;
  EXPECT_EQ(handleRequest(starting, "GET", "/readyz").status, 200);
  EXPECT_EQ(handleRequest(starting, "GET", "/feeds/edl/dmz").body, "203.0.113.10\n");
}

TEST(Api, RoutesFeedsAndMalformedRequests) {
  World w = base();
  addNs(w, "pay", {{kPoolAnnotation, "dmz"}});
  addNs(w, "web", {{kPoolAnnotation, "dmz"}});
  addNs(w, "bad", {{kIpAnnotation, "nope"}});
  addNs(w, "plain", {});
  Sim s;
  auto a = s.step(w, kT0);
  auto v = std::make_shared<View>();
  v->ledger = a.ledger;
  v->statuses = a.statuses;
  v->namespaces = w.namespaces;
  v->pools = w.pools;
  auto ctx = ApiContext::fixed(v, nullptr, [] { return std::string("m 1\n"); });
  auto get = [&](const std::string& t) { return handleRequest(ctx, "GET", t); };
  EXPECT_EQ(get("/feeds/edl/dmz").body, "203.0.113.10\n203.0.113.12\n");
  EXPECT_EQ(get("/feeds/edl/dmz").content_type, "text/plain");
  EXPECT_EQ(get("/feeds/edl/batch").body, "");
  EXPECT_EQ(get("/feeds/edl/nosuch").status, 404);
  EXPECT_EQ(get("/feeds/assignments.csv").body,
            "namespace,ip,pool,since\npay,203.0.113.10,dmz,2027-01-15T08:00:00Z\nweb,203.0.113.12,"
            "dmz,2027-01-15T08:00:00Z\n");
  auto ns = nlohmann::json::parse(get("/api/v1/namespaces/bad").body);
  EXPECT_EQ(ns["phase"], "Refused");
  EXPECT_NE(ns["explain"].get<std::string>().find("is not an IP address"), std::string::npos);
  EXPECT_NE(explain(*v, "plain").find("does not ask for an egress IP"), std::string::npos);
  EXPECT_EQ(get("/api/v1/namespaces/nosuch").status, 404);
  EXPECT_EQ(get("/api/v1/namespaces/..%2f..").status, 400);
  EXPECT_EQ(get("/feeds/edl/a b").status, 400);
  EXPECT_EQ(get("no-slash").status, 400);
  EXPECT_EQ(get("/nope").status, 404);
  EXPECT_EQ(handleRequest(ctx, "POST", "/feeds/edl/dmz").status, 405);
  EXPECT_EQ(get("/api/v1/who-had?ip=garbage").status, 400);
  EXPECT_EQ(get("/api/v1/who-had?ip=203.0.113.10&at=yesterday").status, 400);
  EXPECT_EQ(get("/audit?since=-1").status, 503) << "no store in this context";
  EXPECT_EQ(get("/metrics").body, "m 1\n");
  EXPECT_EQ(get("/api/v1/namespaces/" + std::string(3000, 'a')).status, 400);
}

}  // namespace
}  // namespace nsegress::controller
