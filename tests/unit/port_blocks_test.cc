// Attribution by port (RFC 7422 deterministic NAT): the pool spec, the pure
// block planner, the ledger (memory and SQLite), the gateway states, the
// who API, and the desired-state format's port blocks.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nsegress/common/desired_state.h"
#include "nsegress/controller/allocator.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/controller.h"
#include "nsegress/controller/manifests.h"
#include "nsegress/controller/port_blocks.h"
#include "nsegress/controller/store.h"

namespace nsegress::controller {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}
constexpr Seconds kT0 = 1'800'000'000;

// Pool `pb` (blocks of `size` ports) and `plain`, one gateway node.
World world(uint32_t size, std::vector<std::pair<std::string, std::string>> ns_pool) {
  const std::string yaml =
      "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: pb}\nspec:\n"
      "  addresses: [\"203.0.113.10-203.0.113.12\", \"fd00:e::10-fd00:e::12\"]\n"
      "  portBlockSize: " +
      std::to_string(size) +
      "\n---\napiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: plain}\n"
      "spec:\n  addresses: [\"198.51.100.10-198.51.100.11\"]\n---\n"
      "apiVersion: v1\nkind: Node\nmetadata: {name: gw-a}\n";
  auto w = parseManifests(yaml, "pools.yaml");
  EXPECT_TRUE(w) << w.error().message;
  for (auto& [ns, pool] : ns_pool) w->namespaces[ns] = Namespace{ns, {}, {{kPoolAnnotation, pool}}};
  return *w;
}

Pod pod(const std::string& ns, const std::string& name, std::vector<const char*> ips) {
  Pod p{ns, name, "gw-a", {}};
  for (const char* a : ips) p.ips.push_back(ip(a));
  return p;
}

TEST(PortBlockSpec, SizeIsAWholeNumberInRange) {
  auto get = [](const std::string& v) {
    auto w = parseManifests(
        "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: p}\nspec:\n"
        "  addresses: [\"203.0.113.0/28\"]\n  portBlockSize: " +
            v + "\n",
        "p.yaml");
    EXPECT_TRUE(w) << w.error().message;
    return w->pools.at("p");
  };
  EXPECT_EQ(get("64").port_block_size, 64u);
  EXPECT_EQ(get("64").portBlocks(), 1008u);
  EXPECT_EQ(get("1024").portBlocks(), 63u);
  EXPECT_EQ(get("32256").portBlocks(), 2u);
  EXPECT_EQ(get("\"2048\"").port_block_size, 2048u);
  for (const char* bad : {"63", "0", "32257", "65536", "-64", "1.5", "1k", "true", "[64]",
                          "99999999999999999999", "\"\"", "0x40"}) {
    auto p = get(bad);
    ASSERT_TRUE(p.invalid) << bad;
    EXPECT_NE(p.invalid->find("spec.portBlockSize"), std::string::npos) << *p.invalid;
  }
}

// Plans and applies one round, as the controller does.
BlockPlan step(const World& w, const Ledger& l, BlockBook& book, Seconds now) {
  auto p = planPortBlocks(w, l, book, now);
  applyBlockPlan(book, p);
  return p;
}

TEST(PortBlocks, EachPodGetsABlockKeepsItAndGivesItBackWhenGone) {
  World w = world(32256, {{"pay", "pb"}, {"web", "plain"}});
  w.pods = {pod("pay", "b", {"10.244.1.3"}), pod("pay", "a", {"10.244.1.2", "fd00:10::2"}),
            pod("pay", "c", {"10.244.1.4"}), pod("web", "w", {"10.244.9.2"})};
  auto a = allocate(w, {}, kT0);
  BlockBook book;
  auto p = step(w, a.ledger, book, kT0);
  // Two blocks per address: a and b (by name) get them, c waits (a's IPv6
  // address has none: the namespace holds an IPv4 address only).
  ASSERT_EQ(p.opened.size(), 2u);
  EXPECT_EQ(p.opened[0],
            (PortBlock{ip("203.0.113.10"), 1024, 33279, "pay", "a", ip("10.244.1.2"), kT0, 0}));
  EXPECT_EQ(p.opened[1],
            (PortBlock{ip("203.0.113.10"), 33280, 65535, "pay", "b", ip("10.244.1.3"), kT0, 0}));
  EXPECT_EQ(p.starved, std::vector<std::string>{"pay/c"});
  EXPECT_TRUE(step(w, a.ledger, book, kT0 + 10).empty()) << "nothing changes: nothing planned";
  // a goes: its blocks close; c gets a's IPv4 block.
  w.pods.erase(w.pods.begin() + 1);
  p = step(w, a.ledger, book, kT0 + 20);
  ASSERT_EQ(p.closed.size(), 1u);
  for (const auto& c : p.closed) EXPECT_EQ(c.to, kT0 + 20);
  ASSERT_EQ(p.opened.size(), 1u);
  EXPECT_EQ(p.opened[0].pod, "c");
  EXPECT_EQ(p.opened[0].first, 1024);
  EXPECT_TRUE(p.starved.empty());
  // The namespace releases its address: every block closes.
  w.namespaces.erase("pay");
  a = allocate(w, a.ledger, kT0 + 30);
  p = step(w, a.ledger, book, kT0 + 30);
  EXPECT_EQ(p.closed.size(), 2u);
  EXPECT_TRUE(book.held.empty());
}

TEST(PortBlocks, ANewPodGetsTheBlockGivenBackLongestAgo) {
  World w = world(21504, {{"pay", "pb"}});  // three blocks per address
  w.pods = {pod("pay", "a", {"10.244.1.2"}), pod("pay", "b", {"10.244.1.3"})};
  auto a = allocate(w, {}, kT0);
  BlockBook book;
  step(w, a.ledger, book, kT0);
  w.pods = {pod("pay", "b", {"10.244.1.3"})};
  step(w, a.ledger, book, kT0 + 10);  // a's block (1024) given back at +10
  w.pods.push_back(pod("pay", "c", {"10.244.1.4"}));
  auto p = step(w, a.ledger, book, kT0 + 20);
  ASSERT_EQ(p.opened.size(), 1u);
  EXPECT_EQ(p.opened[0].first, 1024 + 2 * 21504) << "never used before: first";
  w.pods.push_back(pod("pay", "d", {"10.244.1.5"}));
  p = step(w, a.ledger, book, kT0 + 30);
  ASSERT_EQ(p.opened.size(), 1u);
  EXPECT_EQ(p.opened[0].first, 1024) << "then the one given back longest ago";
}

TEST(PortBlocks, ANewAddressOrAnotherBlockSizeClosesAndReopens) {
  World w = world(1024, {{"pay", "pb"}});
  w.pods = {pod("pay", "a", {"10.244.1.2"})};
  auto a = allocate(w, {}, kT0);
  BlockBook book;
  step(w, a.ledger, book, kT0);
  // Same pod name, new address (restarted): the old block closes.
  w.pods = {pod("pay", "a", {"10.244.1.7"})};
  auto p = step(w, a.ledger, book, kT0 + 5);
  ASSERT_EQ(p.closed.size(), 1u);
  EXPECT_EQ(p.closed[0].pod_ip, ip("10.244.1.2"));
  ASSERT_EQ(p.opened.size(), 1u);
  EXPECT_EQ(p.opened[0].pod_ip, ip("10.244.1.7"));
  EXPECT_EQ(p.opened[0].first, 2048) << "not the block just given back";
  // The pool's block size changes: blocks are re-cut.
  w.pools.at("pb").port_block_size = 512;
  p = step(w, a.ledger, book, kT0 + 9);
  ASSERT_EQ(p.closed.size(), 1u);
  ASSERT_EQ(p.opened.size(), 1u);
  EXPECT_EQ(p.opened[0].last - p.opened[0].first + 1, 512);
  // Off: the blocks close, nothing opens.
  w.pools.at("pb").port_block_size = 0;
  p = step(w, a.ledger, book, kT0 + 12);
  EXPECT_EQ(p.closed.size(), 1u);
  EXPECT_TRUE(p.opened.empty());
}

TEST(PortBlocks, APoolTurnedInvalidKeepsItsBlocksAndCutsNoNewOnes) {
  World w = world(1024, {{"pay", "pb"}});
  w.pods = {pod("pay", "a", {"10.244.1.2"}), pod("pay", "b", {"10.244.1.3"})};
  auto a = allocate(w, {}, kT0);
  BlockBook book;
  step(w, a.ledger, book, kT0);
  ASSERT_EQ(book.held.size(), 2u);
  // A typo in the pool: the namespace keeps its address, its pods their
  // blocks; a new pod gets none (fail-closed); a pod that goes gives its back.
  w.pools.at("pb").invalid = "spec.portBlockSize: a typo";
  a = allocate(w, a.ledger, kT0 + 10);
  ASSERT_EQ(a.ledger.at(ip("203.0.113.10")).state, AddressState::kAssigned);
  w.pods = {pod("pay", "a", {"10.244.1.2"}), pod("pay", "c", {"10.244.1.4"})};
  auto p = step(w, a.ledger, book, kT0 + 10);
  EXPECT_TRUE(p.opened.empty());
  ASSERT_EQ(p.closed.size(), 1u);
  EXPECT_EQ(p.closed[0].pod, "b");
  EXPECT_EQ(p.starved, std::vector<std::string>{"pay/c"});
  auto states = gatewayStates(w, a, kT0 + 10, &book);
  const auto& ns = states.at("gw-a").namespaces.at(0);
  EXPECT_TRUE(ns.port_blocks_required) << "still attributed by port";
  ASSERT_EQ(ns.port_blocks.size(), 1u);
  EXPECT_EQ(ns.port_blocks[0].pod, ip("10.244.1.2"));
}

TEST(PortBlocks, AnAddressClaimedByTwoNamespacesGetsNoBlock) {
  World w = world(1024, {{"pay", "pb"}, {"shop", "pb"}});
  w.pods = {pod("pay", "a", {"10.244.1.2"}), pod("shop", "s", {"10.244.1.2"}),
            pod("pay", "ok", {"10.244.1.3"})};
  auto a = allocate(w, {}, kT0);
  BlockBook book;
  auto p = step(w, a.ledger, book, kT0);
  ASSERT_EQ(p.opened.size(), 1u);
  EXPECT_EQ(p.opened[0].pod, "ok");
}

TEST(PortBlocks, BlockAtNamesTheHolderAtThatTime) {
  const std::vector<PortBlock> blocks = {
      {ip("203.0.113.10"), 1024, 2047, "pay", "old", ip("10.244.1.2"), 100, 200},
      {ip("203.0.113.10"), 1024, 2047, "shop", "new", ip("10.244.1.9"), 300, 0},
      {ip("203.0.113.10"), 2048, 3071, "pay", "b", ip("10.244.1.3"), 100, 0}};
  auto who = [&](uint16_t port, Seconds at) {
    auto b = blockAt(blocks, ip("203.0.113.10"), port, at);
    return b ? b->pod : std::string("-");
  };
  EXPECT_EQ(who(1500, 99), "-");
  EXPECT_EQ(who(1500, 100), "old");
  EXPECT_EQ(who(1500, 199), "old");
  EXPECT_EQ(who(1500, 200), "-") << "given back at 200: nobody until 300";
  EXPECT_EQ(who(1500, 300), "new");
  EXPECT_EQ(who(2047, 150), "old");
  EXPECT_EQ(who(2048, 150), "b");
  EXPECT_EQ(who(1023, 150), "-");
  EXPECT_EQ(blockAt(blocks, ip("203.0.113.11"), 1500, 150), std::nullopt);
}

// The controller with a memory ledger: blocks are recorded, reach the
// gateway states, and the who API answers by pod, after the pod is gone too.
TEST(PortBlocks, ControllerRecordsThemAndWhoNamesThePod) {
  auto dir = std::filesystem::temp_directory_path() / "nsegress-pb-test";
  std::filesystem::remove_all(dir);
  MemoryStore store;
  Seconds now = kT0;
  Controller ctl(
      store, [&] { return now; }, dir.string(), ReleaseGuard::offForTest());
  ASSERT_TRUE(ctl.start());
  World w = world(1024, {{"pay", "pb"}, {"web", "plain"}});
  w.pods = {pod("pay", "api-1", {"10.244.1.2"}), pod("web", "w", {"10.244.9.2"})};
  ASSERT_TRUE(ctl.reconcile(w));
  ASSERT_EQ(store.blocks.size(), 1u);
  auto state = parseDesiredState([&] {
    std::ifstream in(dir / "gw-a.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }());
  ASSERT_TRUE(state) << state.error().message;
  for (const auto& ns : state->namespaces) {
    if (ns.name == "pay") {
      EXPECT_TRUE(ns.port_blocks_required);
      ASSERT_EQ(ns.port_blocks.size(), 1u);
      EXPECT_EQ(ns.port_blocks[0],
                (PodPortBlock{ip("203.0.113.10"), ip("10.244.1.2"), 1024, 2047}));
    } else {
      EXPECT_FALSE(ns.port_blocks_required);
      EXPECT_TRUE(ns.port_blocks.empty());
    }
  }
  ApiContext ctx = ApiContext::fixed(nullptr, &store);
  ctx.view = [&] { return ctl.view(); };
  auto get = [&](const std::string& t) { return handleRequest(ctx, "GET", t); };
  auto r = get("/api/v1/who?addr=203.0.113.10:1500");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["answer"], "pod");
  EXPECT_EQ(j["pod"], "api-1");
  EXPECT_EQ(j["namespace"], "pay");
  EXPECT_EQ(j["ports"], "1024-2047");
  EXPECT_TRUE(j["heldTo"].is_null());
  EXPECT_FALSE(j.contains("orWithinThatSecond"));
  // The pod goes; asked about its time, the answer is still the pod.
  now += 100;
  w.pods = {pod("web", "w", {"10.244.9.2"})};
  ASSERT_TRUE(ctl.reconcile(w));
  j = nlohmann::json::parse(
      get("/api/v1/who?addr=203.0.113.10:1500&at=" + std::to_string(kT0 + 50)).body);
  EXPECT_EQ(j["pod"], "api-1");
  EXPECT_EQ(j["heldTo"], formatTime(kT0 + 100));
  // Now: no block covers it; the namespace holding the address answers.
  j = nlohmann::json::parse(get("/api/v1/who?addr=203.0.113.10:1500").body);
  EXPECT_EQ(j["answer"], "namespace");
  EXPECT_EQ(j["namespace"], "pay");
  EXPECT_TRUE(j["pod"].is_null());
  // A pool without blocks: the namespace.
  j = nlohmann::json::parse(get("/api/v1/who?addr=198.51.100.10:40000").body);
  EXPECT_EQ(j["answer"], "namespace");
  EXPECT_EQ(j["namespace"], "web");
  j = nlohmann::json::parse(get("/api/v1/who?addr=192.0.2.99:40000").body);
  EXPECT_EQ(j["answer"], "nobody");
  auto blocks = nlohmann::json::parse(get("/api/v1/port-blocks").body);
  EXPECT_TRUE(blocks["held"].empty());
  EXPECT_EQ(blocks["pools"]["pb"]["blocksPerAddress"], 63);
  std::filesystem::remove_all(dir);
}

TEST(PortBlocks, ABlockHandedOverWithinASecondNamesBothHolders) {
  MemoryStore store;
  store.blocks = {{ip("203.0.113.10"), 1024, 2047, "pay", "old", ip("10.244.1.2"), kT0, kT0 + 5},
                  {ip("203.0.113.10"), 1024, 2047, "pay", "new", ip("10.244.1.3"), kT0 + 5, 0}};
  auto v = std::make_shared<View>();
  v->at = kT0 + 100;
  v->reconciles = 1;
  ApiContext ctx = ApiContext::fixed(v, &store);
  auto j = nlohmann::json::parse(
      handleRequest(ctx, "GET", "/api/v1/who?addr=203.0.113.10:1500&at=" + std::to_string(kT0 + 5))
          .body);
  EXPECT_EQ(j["pod"], "new");
  ASSERT_TRUE(j.contains("orWithinThatSecond")) << j.dump();
  EXPECT_EQ(j["orWithinThatSecond"]["pod"], "old");
  j = nlohmann::json::parse(
      handleRequest(ctx, "GET", "/api/v1/who?addr=203.0.113.10:1500&at=" + std::to_string(kT0 + 6))
          .body);
  EXPECT_FALSE(j.contains("orWithinThatSecond"));
}

TEST(PortBlocks, WhoRefusesMalformedQuestionsWithAReason) {
  MemoryStore store;
  auto v = std::make_shared<View>();
  v->at = kT0;
  v->reconciles = 1;
  ApiContext ctx = ApiContext::fixed(v, &store);
  for (const char* bad :
       {"/api/v1/who", "/api/v1/who?addr=203.0.113.10", "/api/v1/who?addr=203.0.113.10:0",
        "/api/v1/who?addr=203.0.113.10:65536", "/api/v1/who?addr=203.0.113.10:-1",
        "/api/v1/who?addr=203.0.113.10:8a", "/api/v1/who?addr=:80", "/api/v1/who?addr=[fd00::1]80",
        "/api/v1/who?addr=fd00::1:80", "/api/v1/who?addr=[203.0.113.10]:80",
        "/api/v1/who?addr=banana:80", "/api/v1/who?addr=203.0.113.10:80&at=yesterday",
        "/api/v1/who?addr=203.0.113.10:80&at=99999999999999999999",
        "/api/v1/who?addr=203.0.113.10:80&at=2026-02-30T00:00:00Z",
        "/api/v1/who?addr=203.0.113.10:80&at=2025-02-29T00:00:00Z",
        "/api/v1/who?addr=203.0.113.10:80&addr=203.0.113.11:80",
        "/api/v1/who?addr=203.0.113.10:80&pod=x", "/api/v1/who?addr=203.0.113.10:1%0a2"}) {
    auto r = handleRequest(ctx, "GET", bad);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
    EXPECT_NE(r.body.find("query parameter"), std::string::npos) << bad << " -> " << r.body;
  }
  EXPECT_EQ(handleRequest(ctx, "GET", "/api/v1/who?addr=[fd00:e::10]:4000&at=2027-01-01T00:00:00Z")
                .status,
            200);
}

// A ledger that keeps no port blocks (cluster mode's, today) turns a pool
// asking for them invalid: attribution is never silently dropped.
class NoBlocksStore final : public LedgerStore {
 public:
  MemoryStore inner;
  Result<Ledger> load() override { return inner.load(); }
  using LedgerStore::commit;
  Status commit(std::vector<AddressRecord>& changed, const std::vector<AuditEvent>& events,
                const std::map<std::string, std::string>& meta = {}) override {
    return inner.commit(changed, events, meta);
  }
  Result<std::vector<StoredEvent>> audit(int64_t since, size_t limit) override {
    return inner.audit(since, limit);
  }
  Result<std::optional<std::string>> meta(const std::string& key) override {
    return inner.meta(key);
  }
};

TEST(PortBlocks, ALedgerWithoutBlocksMakesSuchAPoolInvalidNotSilent) {
  NoBlocksStore store;
  Controller ctl(
      store, [] { return kT0; }, "", ReleaseGuard::offForTest());
  ASSERT_TRUE(ctl.start());
  World w = world(1024, {{"pay", "pb"}});
  w.pods = {pod("pay", "a", {"10.244.1.2"})};
  ASSERT_TRUE(ctl.reconcile(w));
  const auto& st = ctl.view()->statuses.at("pay");
  EXPECT_EQ(st.phase, Phase::kRefused);
  EXPECT_NE(st.reason.find("portBlockSize"), std::string::npos) << st.reason;
  EXPECT_TRUE(ctl.view()->ledger.empty());
}

TEST(PortBlocks, SqliteKeepsEveryBlockAppendOnlyAndFindsThemByPort) {
  auto dir = std::filesystem::temp_directory_path() / "nsegress-pb-sqlite";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "ledger.db").string();
  PortBlock a{ip("203.0.113.10"), 1024, 2047, "pay", "a", ip("10.244.1.2"), kT0, 0};
  PortBlock b{ip("fd00:e::10"), 2048, 3071, "pay", "b", ip("fd00:10::3"), kT0, 0};
  {
    auto s = SqliteStore::open(path, {true});
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE((*s)->commitBlocks(BlockPlan{{a, b}, {}, {}}));
    PortBlock closed = a;
    closed.to = kT0 + 60;
    ASSERT_TRUE((*s)->commitBlocks(BlockPlan{{}, {closed}, {}}));
    // Closing it twice (a ledger changed under us) is refused, whole.
    PortBlock c2{ip("203.0.113.10"), 4096, 5119, "pay", "c", ip("10.244.1.4"), kT0, 0};
    EXPECT_FALSE((*s)->commitBlocks(BlockPlan{{c2}, {closed}, {}}));
    // Two holders of one block at once: refused by the ledger itself.
    PortBlock twice = b;
    twice.pod = "other";
    EXPECT_FALSE((*s)->commitBlocks(BlockPlan{{twice}, {}, {}}));
  }
  auto s = SqliteStore::open(path);
  ASSERT_TRUE(s) << s.error().message;
  auto book = (*s)->loadBlocks();
  ASSERT_TRUE(book);
  ASSERT_EQ(book->held.size(), 1u);
  EXPECT_EQ(book->held[0], b);
  EXPECT_EQ((book->last_closed[{ip("203.0.113.10"), 1024}]), kT0 + 60);
  auto cov = (*s)->blocksCovering(ip("203.0.113.10"), 2047, kT0 + 30);
  ASSERT_TRUE(cov);
  ASSERT_EQ(cov->size(), 1u);
  EXPECT_EQ((*cov)[0].to, kT0 + 60);
  EXPECT_TRUE((*s)->blocksCovering(ip("203.0.113.10"), 2047, kT0 + 60)->empty()) << "closed";
  EXPECT_TRUE((*s)->blocksCovering(ip("203.0.113.10"), 2047, kT0 - 1)->empty()) << "not yet";
  EXPECT_TRUE((*s)->blocksCovering(ip("203.0.113.10"), 2048, kT0 + 30)->empty());
  EXPECT_EQ((*s)->blocksCovering(ip("fd00:e::10"), 3000, kT0 + 999999)->size(), 1u);
  // The table is append-only (a block is only ever closed, once).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  EXPECT_NE(sqlite3_exec(db, "DELETE FROM port_blocks", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_NE(sqlite3_exec(db, "UPDATE port_blocks SET pod='x'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  EXPECT_NE(sqlite3_exec(db, "UPDATE port_blocks SET held_to=0", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  s->reset();
  std::filesystem::remove_all(dir);
}

TEST(PortBlocksState, ParsedStrictlyAndRoundTripped) {
  auto parse = [](const std::string& blocks, const std::string& more = "") {
    return parseDesiredState(
        R"({"apiVersion":"nsegress.io/v1alpha1","kind":"GatewayDesiredState","gateway":"gw",)"
        R"("generation":1,"namespaces":[{"name":"pay","egressIPs":["203.0.113.10","fd00:e::10"],)"
        R"("podIPs":["10.244.1.2","10.244.1.3","fd00:10::2"],"portBlocksRequired":true,)"
        R"("portBlocks":)" +
        blocks + "}" + more + "]}");
  };
  auto ok = parse(R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"1024-2047"},)"
                  R"({"egressIP":"203.0.113.10","podIP":"10.244.1.3","ports":"2048-3071"},)"
                  R"({"egressIP":"fd00:e::10","podIP":"fd00:10::2","ports":"1024-2047"}])");
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_EQ(ok->namespaces[0].port_blocks.size(), 3u);
  auto again = parseDesiredState(serializeDesiredState(*ok));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->namespaces, ok->namespaces);
  const std::pair<const char*, const char*> bad[] = {
      {R"({})", "must be a list"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2"}])", "needs egressIP, podIP and ports"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"2047-1024"}])", "ports"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"0-5"}])", "ports"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"1024-65536"}])", "ports"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":1024}])", "ports"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"1024-2047","x":1}])",
       "unknown field"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.9","ports":"1024-2047"}])",
       "not a pod address of this namespace"},
      {R"([{"egressIP":"203.0.113.10","podIP":"fd00:10::2","ports":"1024-2047"}])",
       "different families"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"1024-2047"},)"
       R"({"egressIP":"203.0.113.10","podIP":"10.244.1.3","ports":"2000-3000"}])",
       "overlaps"},
      {R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"1024-2047"},)"
       R"({"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"3000-4000"}])",
       "two blocks"},
  };
  for (const auto& [blocks, why] : bad) {
    auto r = parse(blocks);
    ASSERT_FALSE(r) << blocks;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("portBlocks"), std::string::npos) << r.error().message;
  }
  // Two namespaces' blocks on one address may not overlap either.
  auto cross = parse(R"([{"egressIP":"203.0.113.10","podIP":"10.244.1.2","ports":"1024-2047"}])",
                     R"(,{"name":"shop","egressIPs":["203.0.113.10"],"podIPs":["10.244.2.2"],)"
                     R"("portBlocks":[{"egressIP":"203.0.113.10","podIP":"10.244.2.2",)"
                     R"("ports":"1500-1600"}]})");
  ASSERT_FALSE(cross);
  EXPECT_NE(cross.error().message.find("overlaps"), std::string::npos);
}

TEST(PortBlocksState, AddressAndPortParsing) {
  auto p = parseIpPort("203.0.113.10:41234");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ip, ip("203.0.113.10"));
  EXPECT_EQ(p->port, 41234);
  p = parseIpPort("[fd00:e::10]:1");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ip, ip("fd00:e::10"));
  for (const char* bad : {"", ":", "203.0.113.10", "203.0.113.10:", "203.0.113.10:0",
                          "203.0.113.10:65536", "[203.0.113.10]:80", "fd00::1:80", "[fd00::1]",
                          "[fd00::1]:", "[fd00::1]:x", "[]:80", "[fd00::1]:80:80", " 1.2.3.4:5"})
    EXPECT_FALSE(parseIpPort(bad)) << bad;
}

}  // namespace
}  // namespace nsegress::controller
