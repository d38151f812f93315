// The controller's trust boundaries (issue 9): no input crashes, hangs or
// releases anything; pools hand out only usable addresses. Each test fails on
// the code before the fix it covers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "temp_dir.h"

#include "fake_clock.h"
#include "nsegress/common/decode.h"
#include "nsegress/common/json.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/controller.h"
#include "nsegress/controller/http.h"

namespace nsegress::controller {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}
constexpr Seconds kT0 = 1'800'000'000;

using testing::TempDir;

std::string pool(const std::string& name, const std::string& addresses,
                 const std::string& extra = "") {
  return "apiVersion: nsegress.io/v1alpha1\nkind: EgressPool\nmetadata: {name: " + name +
         "}\nspec:\n  addresses: [" + addresses + "]\n" + extra;
}
std::string ns(const std::string& name, const std::string& pool_name) {
  return "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: " + name +
         ", annotations: {nsegress.io/pool: " + pool_name + "}}\n";
}
const std::string kNode =
    "---\napiVersion: v1\nkind: Node\nmetadata: {name: gw-1, labels: {gateway: \"true\"}}\n";

ManifestOptions immediate() {
  ManifestOptions o;
  o.settle = std::chrono::milliseconds(0);
  return o;
}

// ---- A: one input never takes the controller down ---------------------------

TEST(Hostile, WhoHadAtAnAbsurdTimeIsABadRequestNotACrash) {
  auto v = std::make_shared<View>();
  auto ctx = ApiContext::fixed(v);
  for (const char* at : {"99999999999999999", "-99999999999999", "253402300800",
                         "9223372036854775807", "10000-01-01T00:00:00Z", "2026-13-01T00:00:00Z"}) {
    auto r = handleRequest(ctx, "GET", std::string("/api/v1/who-had?ip=203.0.113.10&at=") + at);
    EXPECT_EQ(r.status, 400) << at << ": " << r.body;
  }
  EXPECT_EQ(formatTime(std::numeric_limits<Seconds>::max()), "");
  EXPECT_EQ(formatTime(kMaxTime), "9999-12-31T23:59:59Z");
}

TEST(Hostile, YamlThatMadeTheParserLoopForeverIsRefusedAtOnce) {
  for (const char* text : {",", ", a", ",}", "- ,\n- ,", ",\n,\n,"}) {
    auto r = parseManifests(text, "evil.yaml");
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find("evil.yaml"), std::string::npos) << r.error().message;
  }
}

TEST(Hostile, YamlIsBoundedWhileItIsRead) {
  // A billion laughs: nine levels of ten aliases each.
  std::string laughs = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    std::string prev(1, static_cast<char>(c - 1));
    laughs += std::string(1, c) + ": &" + c + " [*" + prev + ",*" + prev + ",*" + prev + ",*" +
              prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + "]\n";
  }
  auto r = parseYamlDocuments(laughs);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("values (aliases included)"), std::string::npos);
  std::string deep(5000, '[');
  EXPECT_FALSE(parseYamlDocuments(deep + std::string(5000, ']')));
  auto dup = parseYamlDocuments("a: 1\na: 2\n");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("duplicate key"), std::string::npos);
}

TEST(Hostile, InvalidUtf8IsRefusedWithTheFileNamedAndNothingCrashes) {
  auto r = parseManifests(
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pay\n  annotations: {nsegress.io/pool: "
      "\"d\xff\xfemz\"}\n",
      "ns.yaml");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("UTF-8"), std::string::npos) << r.error().message;
  // A value with invalid bytes reaching the controller by any other path is
  // still serialized (replaced), never a crash (it used to be a crash loop:
  // the statuses are stored as JSON on every reconcile).
  MemoryStore store;
  Controller c(
      store, [] { return kT0; }, "");
  ASSERT_TRUE(c.start());
  World w;
  w.namespaces["pay"] = Namespace{"pay", {}, {{kPoolAnnotation, "d\xff\xfemz"}}};
  auto rep = c.reconcile(w);
  ASSERT_TRUE(rep) << rep.error().message;
  auto api = handleRequest(ApiContext::fixed(c.view()), "GET", "/api/v1/namespaces");
  EXPECT_EQ(api.status, 200);
  EXPECT_TRUE(parseJson(api.body)) << "the answer is valid JSON";
}

TEST(Hostile, AnOversizedManifestIsRefusedAndUnchangedFilesAreNotParsedAgain) {
  TempDir d;
  d.write("pools.yaml", pool("dmz", "\"203.0.113.8/29\"") + kNode);
  d.write("ns.yaml", ns("pay", "dmz"));
  ManifestOptions o = immediate();
  o.max_file_bytes = 4096;
  ManifestDirectory md(d.path, SystemClock::instance(), o);
  auto w = md.load();
  ASSERT_TRUE(w.namespaces.count("pay"));
  const auto parsed = md.parses();
  // Backdate the files past the recent-change window, then read again.
  for (const char* f : {"pools.yaml", "ns.yaml"})
    std::filesystem::last_write_time(
        d.path + "/" + f, std::filesystem::file_time_type::clock::now() - std::chrono::seconds(10));
  md.load();
  const auto after_backdate = md.parses();
  md.load();
  md.load();
  EXPECT_EQ(md.parses(), after_backdate) << "unchanged files are not parsed again";
  EXPECT_LE(after_backdate, parsed + 2);
  // A file over the limit is refused without being read; its last good objects stay.
  d.write("ns.yaml", ns("pay", "dmz") + "# " + std::string(8000, 'x') + "\n");
  w = md.load();
  EXPECT_TRUE(w.namespaces.count("pay"));
  ASSERT_FALSE(md.errors().empty());
  EXPECT_NE(md.errors()[0].message.find("larger than 4096"), std::string::npos);
}

TEST(Hostile, ANonRegularFileInTheManifestDirectoryNeverBlocksOrIsRead) {
  TempDir d;
  d.write("ns.yaml", ns("pay", "dmz"));
  ASSERT_EQ(mkfifo((d.path + "/fifo.yaml").c_str(), 0600), 0);
  std::filesystem::create_symlink("/dev/zero", d.path + "/zero.yaml");
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  auto w = md.load();  // would block forever on the FIFO, or read /dev/zero until out of memory
  EXPECT_TRUE(w.namespaces.count("pay"));
  EXPECT_EQ(md.errors().size(), 2u);
  for (const auto& e : md.errors())
    EXPECT_NE(e.message.find("not a regular file"), std::string::npos) << e.message;
}

TEST(Hostile, AcceptFailingForLackOfDescriptorsBacksOffInsteadOfSpinning) {
#ifdef NSEGRESS_SANITIZED
  // The sanitizers' runtime needs descriptors of its own (it probes memory
  // through a pipe), so with none left it reports false errors. The plain
  // build runs this test.
  GTEST_SKIP() << "needs free descriptors the sanitizer runtime lacks here";
#endif
  // In a child: with the descriptor limit exhausted, a queued connection
  // makes accept() fail again and again.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    boost::asio::io_context io;
    Router r;
    auto s = HttpServer::listen(io, "127.0.0.1", 0, r);
    if (!s) _exit(2);
    const uint16_t port = (*s)->port();
    int c = socket(AF_INET, SOCK_STREAM, 0);  // the client, before the limit
    rlimit lim{0, 0};
    getrlimit(RLIMIT_NOFILE, &lim);
    std::vector<int> held;
    for (int f; (f = open("/dev/null", O_RDONLY)) >= 0;) held.push_back(f);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) _exit(3);
    io.run_for(std::chrono::seconds(1));
    const uint64_t errors = (*s)->acceptErrors();
    (void)!write(fds[1], &errors, sizeof errors);
    _exit(0);
  }
  close(fds[1]);
  uint64_t errors = 0;
  ASSERT_EQ(read(fds[0], &errors, sizeof errors), static_cast<ssize_t>(sizeof errors));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_GE(errors, 1u) << "accept() did fail";
  EXPECT_LE(errors, 30u) << "about ten tries in a second, not thousands";
}

// ---- pools --------------------------------------------------------------------

TEST(Pools, AHugePoolWithLargeExclusionsStillFindsItsLowestFreeAddress) {
  auto w = parseManifests(
      pool("big", "\"10.0.0.0/8\"", "  exclude: [\"10.0.0.0/12\"]\n") + kNode + ns("pay", "big"),
      "f.yaml");
  ASSERT_TRUE(w) << w.error().message;
  auto a = allocate(*w, {}, kT0);
  ASSERT_EQ(a.statuses.at("pay").phase, Phase::kAssigned) << a.statuses.at("pay").reason;
  EXPECT_EQ(a.statuses.at("pay").ip, ip("10.16.0.0"));
  // Thousands of exclusions and held addresses: every other /24 excluded,
  // the first 5000 usable addresses held.
  std::string ex;
  for (int i = 0; i < 4000; i += 2)
    ex += (ex.empty() ? "\"" : ",\"") + std::string("10.") + std::to_string(i / 256) + "." +
          std::to_string(i % 256) + ".0/24\"";
  auto w2 = parseManifests(
      pool("big", "\"10.0.0.0/8\"", "  exclude: [" + ex + "]\n") + kNode + ns("pay", "big"),
      "f.yaml");
  ASSERT_TRUE(w2) << w2.error().message;
  Ledger held;
  int n = 0;
  for (uint32_t i = 0x0A000000; n < 5000; ++i) {
    const auto a2 = IpAddress::v4(i);
    if (w2->pools.at("big").excludes(a2)) continue;
    held[a2] = AddressRecord{
        a2, "big", AddressState::kQuarantined, "old" + std::to_string(n), "", 1, 1, kT0 + 1000};
    ++n;
  }
  auto b = allocate(*w2, held, kT0);
  ASSERT_EQ(b.statuses.at("pay").phase, Phase::kAssigned) << b.statuses.at("pay").reason;
  const auto got = *b.statuses.at("pay").ip;
  EXPECT_FALSE(w2->pools.at("big").excludes(got));
  EXPECT_FALSE(held.count(got));
  // It is the lowest: everything below it is excluded or held.
  for (uint32_t i = 0x0A000000; i < got.v4HostOrder(); ++i) {
    const auto x = IpAddress::v4(i);
    ASSERT_TRUE(w2->pools.at("big").excludes(x) || held.count(x)) << x.str();
  }
}

TEST(Pools, SpecialPurposeAddressesAreRefusedAndANetworksEdgesNeverHandedOut) {
  for (const char* bad : {"\"0.0.0.0/30\"", "\"127.0.0.1\"", "\"224.0.0.1\"", "\"255.255.255.255\"",
                          "\"169.254.1.0/24\"", "\"::1\"", "\"fe80::/64\"", "\"ff02::1\"",
                          "\"::ffff:10.0.0.1\"", "\"10.0.0.0-127.0.0.1\""}) {
    auto w = parseManifests(pool("p", bad), "f.yaml");
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->pools.at("p").invalid) << bad;
    EXPECT_NE(w->pools.at("p").invalid->find("can never be an egress address"), std::string::npos)
        << *w->pools.at("p").invalid;
  }
  auto w = parseManifests(
      pool("p", "\"203.0.113.0/30\"") + kNode + ns("a", "p") + ns("b", "p") + ns("c", "p"),
      "f.yaml");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->pools.at("p").size(), 2u) << "a /30 has two usable addresses";
  auto a = allocate(*w, {}, kT0);
  EXPECT_EQ(a.statuses.at("a").ip, ip("203.0.113.1"));
  EXPECT_EQ(a.statuses.at("b").ip, ip("203.0.113.2"));
  EXPECT_EQ(a.statuses.at("c").phase, Phase::kPending) << "not .0, not .3";
  auto w31 = parseManifests(pool("p", "\"203.0.113.0/31\""), "f.yaml");
  EXPECT_EQ(w31->pools.at("p").size(), 2u) << "a /31 is all usable (RFC 3021)";
}

TEST(Pools, OverlappingPoolsAreBothRefusedAndTheirTenantsKeepTheirAddresses) {
  TempDir d;
  d.write("a.yaml", pool("first", "\"203.0.113.8/29\"") + kNode + ns("pay", "first"));
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  auto w = md.load();
  auto a = allocate(w, {}, kT0);
  ASSERT_EQ(a.statuses.at("pay").phase, Phase::kAssigned);
  d.write("b.yaml", pool("second", "\"203.0.113.12-203.0.113.20\""));
  w = md.load();
  ASSERT_TRUE(w.pools.at("first").invalid);
  ASSERT_TRUE(w.pools.at("second").invalid);
  EXPECT_NE(w.pools.at("second").invalid->find("overlap pool first"), std::string::npos);
  auto b = allocate(w, a.ledger, kT0 + 1, a.statuses);
  EXPECT_EQ(b.statuses.at("pay").ip, a.statuses.at("pay").ip) << "kept";
  EXPECT_TRUE(b.changed.empty());
}

TEST(Pools, AnIpv6Slash64ReportsItsSizeInsteadOfZero) {
  auto w = parseManifests(pool("v6", "\"2001:db8::/64\""), "f.yaml");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->pools.at("v6").size(), std::numeric_limits<uint64_t>::max())
      << "2^64 - 1 (the subnet-router anycast excluded), not 0";
  EXPECT_EQ(poolUsage(w->pools, {}).at("v6").free, std::numeric_limits<uint64_t>::max());
  auto small = parseManifests(pool("v6", "\"2001:db8::/120\""), "f.yaml");
  EXPECT_EQ(small->pools.at("v6").size(), 255u);
}

TEST(Pools, AMisspeltFieldMakesThePoolInvalidAndNeverSelectsEveryone) {
  for (const auto& [extra, field] : std::vector<std::pair<std::string, std::string>>{
           {"  namespaceSelector: {matchLabel: {team: pay}}\n",
            "spec.namespaceSelector.matchLabel"},
           {"  namespaceSelectr: {matchLabels: {team: pay}}\n", "spec.namespaceSelectr"},
           {"  nodeSelector: {matchExpressions: [{key: a, operator: Exists, value: [x]}]}\n",
            "spec.nodeSelector.matchExpressions[0].value"}}) {
    auto w =
        parseManifests(pool("dmz", "\"203.0.113.0/28\"", extra) + ns("other", "dmz"), "f.yaml");
    ASSERT_TRUE(w) << extra;
    const Pool& p = w->pools.at("dmz");
    ASSERT_TRUE(p.invalid) << extra << ": a typo must not mean 'everyone'";
    EXPECT_NE(p.invalid->find(field + ": unknown field"), std::string::npos) << *p.invalid;
    // The namespace is told what to fix.
    auto a = allocate(*w, {}, kT0, {});
    EXPECT_EQ(a.statuses.at("other").phase, Phase::kRefused);
    EXPECT_NE(a.statuses.at("other").reason.find("fix EgressPool dmz"), std::string::npos)
        << a.statuses.at("other").reason;
  }
}

TEST(Pools, ANodeNamedLikeAPathIsRefusedAndNeverBecomesAFileName) {
  auto w = parseManifests("apiVersion: v1\nkind: Node\nmetadata: {name: ../../x}\n", "f.yaml");
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message.find("not a valid node name"), std::string::npos);
  // Even if one reached the controller another way, nothing is written outside.
  TempDir d;
  MemoryStore store;
  Controller c(
      store, [] { return kT0; }, d.path + "/state");
  ASSERT_TRUE(c.start());
  World world;
  Pool p;
  p.name = "dmz";
  p.ranges = {{ip("203.0.113.1"), ip("203.0.113.9")}};
  world.pools["dmz"] = p;
  world.nodes["../../x"] = Node{"../../x", {}, true};
  world.namespaces["pay"] = Namespace{"pay", {}, {{kPoolAnnotation, "dmz"}}};
  ASSERT_TRUE(c.reconcile(world));
  EXPECT_FALSE(std::filesystem::exists(d.path + "/x.json"));
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(d.path).parent_path() / "x.json"));
}

// ---- B: nothing is released without positive evidence -------------------------

class Release : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string all = pool("dmz", "\"203.0.113.0/24\"") + kNode;
    for (int i = 0; i < 20; ++i) all += ns("team-" + std::to_string(i), "dmz");
    d.write("all.yaml", all);
  }
  Result<ReconcileReport> step(ManifestDirectory& md) {
    auto w = md.load();
    return c.reconcile(w, md.errors(), md.state());
  }
  size_t assigned() const {
    size_t n = 0;
    for (const auto& [a, r] : c.view()->ledger) n += r.state == AddressState::kAssigned;
    return n;
  }
  TempDir d;
  MemoryStore store;
  Controller c{store, [] { return kT0; }, ""};
};

TEST_F(Release, AManifestDirectoryThatCannotBeListedHoldsEverything) {
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(step(md));
  ASSERT_EQ(assigned(), 20u);
  std::filesystem::rename(d.path, d.path + ".moved");  // a typo'd path, an unmounted volume
  auto r = step(md);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->held);
  EXPECT_EQ(assigned(), 20u) << "nothing released";
  ASSERT_TRUE(c.view()->hold);
  EXPECT_NE(c.view()->hold->reason.find("cannot be listed"), std::string::npos);
  EXPECT_TRUE(c.view()->hold->token.empty()) << "not confirmable: fix the source";
  // At start-up too: a new controller on the same ledger and a missing directory.
  Controller fresh(
      store, [] { return kT0 + 5; }, "");
  ASSERT_TRUE(fresh.start());
  ManifestDirectory gone(d.path, SystemClock::instance(), immediate());
  auto w = gone.load();
  auto r2 = fresh.reconcile(w, gone.errors(), gone.state());
  ASSERT_TRUE(r2);
  EXPECT_TRUE(r2->held);
  EXPECT_EQ(store.events.size(), 20u) << "no Released event was recorded";
  std::filesystem::rename(d.path + ".moved", d.path);
  auto back = step(md);
  ASSERT_TRUE(back);
  EXPECT_FALSE(back->held);
  EXPECT_FALSE(c.view()->hold);
}

TEST_F(Release, AnEmptiedDirectoryReleasesNothingUntilAnOperatorConfirms) {
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(step(md));
  std::filesystem::remove(d.path + "/all.yaml");
  auto r = step(md);
  ASSERT_TRUE(r && r->held);
  EXPECT_EQ(assigned(), 20u);
  const auto token = c.view()->hold->token;
  ASSERT_FALSE(token.empty());
  EXPECT_EQ(c.view()->hold->namespaces.size(), 20u);
  auto wrong = c.confirmRelease("0000000000000000");
  ASSERT_FALSE(wrong) << "a token for other releases";
  EXPECT_EQ(wrong.error().message.find(token), std::string::npos) << "never tells the right one";
  EXPECT_TRUE(step(md)->held) << "still held without confirmation";
  ApiContext ctx{[&] { return c.view(); },
                 nullptr,
                 {},
                 {},
                 [&](const std::string& t) { return c.confirmRelease(t); }};
  const Router router = apiRouter(ctx);
  auto confirm = [&](const std::string& peer, const std::string& host) {
    auto q = HttpRequest::make("POST", "/api/v1/hold/confirm?token=" + token);
    q.peer = peer;
    if (!host.empty()) q.headers.set("Host", host);
    return router.dispatch(q).status;
  };
  // A state change, without credentials yet: from this host only, and only
  // with a Host header naming it (a browser lured by DNS rebinding sends its own).
  EXPECT_EQ(confirm("198.51.100.7", "127.0.0.1:8080"), 403);
  EXPECT_EQ(confirm("127.0.0.1", "evil.example:8080"), 403);
  EXPECT_EQ(confirm("127.0.0.1", ""), 403);
  EXPECT_TRUE(step(md)->held) << "none of those confirmed anything";
  ASSERT_EQ(confirm("127.0.0.1", "localhost:8080"), 200);
  auto done = step(md);
  ASSERT_TRUE(done);
  EXPECT_FALSE(done->held);
  EXPECT_EQ(assigned(), 0u) << "released, as confirmed";
}

TEST_F(Release, AManifestRewrittenInPlaceIsNotReadHalfWritten) {
  testing::FakeClock clock;
  ManifestOptions o;
  o.settle = std::chrono::milliseconds(500);
  ManifestDirectory md(d.path, clock, o);
  // The clock's wall time follows the file times, so "now" is ours to set.
  auto at = [&](const std::string& f, std::chrono::milliseconds after_write) {
    const auto mtime = std::filesystem::last_write_time(d.path + "/" + f);
    const auto sys = std::chrono::file_clock::to_sys(mtime);
    clock.setWall(std::chrono::time_point_cast<std::chrono::system_clock::duration>(sys) +
                  after_write);
  };
  ASSERT_TRUE(c.start());
  at("all.yaml", std::chrono::milliseconds(600));
  ASSERT_TRUE(step(md));
  ASSERT_EQ(assigned(), 20u);
  // The first seven namespaces of the file are written; the rest not yet.
  std::string part = pool("dmz", "\"203.0.113.0/24\"") + kNode;
  for (int i = 0; i < 7; ++i) part += ns("team-" + std::to_string(i), "dmz");
  d.write("all.yaml", part);
  at("all.yaml", std::chrono::milliseconds(100));
  auto r = step(md);
  ASSERT_TRUE(r && r->held) << "a file changed 100 ms ago may be mid-write";
  ASSERT_TRUE(r->recheck_after);
  EXPECT_EQ(assigned(), 20u);
  // Even once it has settled, 13 of 20 releases at once wait for an operator.
  at("all.yaml", std::chrono::milliseconds(600));
  r = step(md);
  ASSERT_TRUE(r && r->held);
  EXPECT_EQ(c.view()->hold->namespaces.size(), 13u);
  EXPECT_EQ(assigned(), 20u);
  EXPECT_EQ(store.events.size(), 20u) << "no Released event, no Reclaimed later";
}

TEST_F(Release, OneOrTwoReleasesAtATimeNeedNoConfirmation) {
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(step(md));
  std::string all = pool("dmz", "\"203.0.113.0/24\"") + kNode;
  for (int i = 2; i < 20; ++i) all += ns("team-" + std::to_string(i), "dmz");
  d.write("all.yaml", all);
  auto r = step(md);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->held);
  EXPECT_EQ(assigned(), 18u);
}

TEST_F(Release, ANamespaceDefinedInTwoFilesIsRefusedAndNeverMoves) {
  d.write("b.yaml", pool("other", "\"198.51.100.0/24\""));
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(step(md));
  const auto before = c.view()->statuses.at("team-3");
  // A second file (sorting first) defines team-3 again, with another pool.
  d.write("a-dup.yaml", ns("team-3", "other"));
  auto r = step(md);
  ASSERT_TRUE(r);
  EXPECT_EQ(c.view()->statuses.at("team-3").ip, before.ip) << "no move";
  EXPECT_EQ(c.view()->statuses.at("team-3").pool, "dmz");
  bool reported = false;
  for (const auto& e : md.errors())
    reported |= e.message.find("Namespace team-3 is also defined in") != std::string::npos;
  EXPECT_TRUE(reported);
  // A new namespace defined twice is not created either.
  d.write("c.yaml", ns("newbie", "dmz"));
  d.write("d.yaml", ns("newbie", "dmz"));
  ASSERT_TRUE(step(md));
  EXPECT_FALSE(c.view()->statuses.count("newbie"));
}

TEST_F(Release, AFileThatDoesNotLoadAtStartHoldsInsteadOfReleasingItsNamespaces) {
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(step(md));
  ASSERT_EQ(assigned(), 20u);
  // The controller restarts while the file is broken (a typo, or too large).
  const std::string good = [&] {
    std::ifstream in(d.path + "/all.yaml");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  d.write("all.yaml", good + "\n---\nkind: [unterminated\n");
  for (int pass = 0; pass < 2; ++pass) {  // also when re-read unchanged
    ManifestDirectory restarted(d.path, SystemClock::instance(), immediate());
    ASSERT_TRUE(step(restarted));
    EXPECT_FALSE(restarted.state().complete);
    ASSERT_TRUE(c.view()->hold) << "held, not released";
    EXPECT_EQ(assigned(), 20u);
    ASSERT_TRUE(step(restarted));
    EXPECT_FALSE(restarted.state().complete) << "still held on the unchanged file";
    EXPECT_EQ(assigned(), 20u);
  }
  // Fixed: it loads and nothing moved.
  d.write("all.yaml", good);
  ManifestDirectory fixed(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(step(fixed));
  EXPECT_TRUE(fixed.state().complete);
  EXPECT_FALSE(c.view()->hold);
  EXPECT_EQ(assigned(), 20u);
}

TEST_F(Release, ADuplicateFoundAtStartHoldsInsteadOfReleasingItsNamespace) {
  ManifestDirectory md(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(c.start());
  ASSERT_TRUE(step(md));
  const auto before = c.view()->statuses.at("team-3");
  d.write("a-dup.yaml", ns("team-3", "dmz"));
  // A restart: the new reader has no earlier definition of team-3 to keep.
  ManifestDirectory restarted(d.path, SystemClock::instance(), immediate());
  ASSERT_TRUE(step(restarted));
  EXPECT_FALSE(restarted.state().complete);
  EXPECT_NE(restarted.state().why.find("Namespace team-3 is defined in two files"),
            std::string::npos)
      << restarted.state().why;
  ASSERT_TRUE(c.view()->hold);
  EXPECT_EQ(assigned(), 20u) << "team-3 was not released";
  // Removing the duplicate resumes, with team-3 where it was.
  std::filesystem::remove(d.path + "/a-dup.yaml");
  ASSERT_TRUE(step(restarted));
  EXPECT_TRUE(restarted.state().complete);
  EXPECT_FALSE(c.view()->hold);
  EXPECT_EQ(c.view()->statuses.at("team-3").ip, before.ip);
}

}  // namespace
}  // namespace nsegress::controller
