// The firewall feeds (feeds.h): each firewall's format, selections by
// label, checksums, conditional requests (ETag, Last-Modified, 304), and
// never an empty list for a pool that is not there or a controller that
// does not serve. Routes through the real router; one request over a real
// loopback socket for the wire form of a 304.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "nsegress/controller/api.h"
#include "nsegress/controller/feeds.h"
#include "nsegress/controller/http.h"

namespace nsegress::controller {
namespace {

constexpr Seconds kT = 1'800'000'000;  // 2027-01-15T08:00:00Z

std::shared_ptr<View> view() {
  auto v = std::make_shared<View>();
  v->at = kT + 600;
  v->reconciles = 1;
  v->pools["dmz"].name = "dmz";
  v->pools["batch"].name = "batch";
  auto ns = [&](const std::string& name, Labels labels) {
    v->namespaces[name].name = name;
    v->namespaces[name].labels = std::move(labels);
  };
  ns("pay", {{"team", "payments"}, {"env", "prod"}});
  ns("pay-test", {{"team", "payments"}, {"env", "test"}});
  ns("web", {{"team", "web"}});
  auto rec = [&](const char* ip, const char* ns, AddressState st, Seconds at) {
    AddressRecord r{*IpAddress::parse(ip), "dmz", st, ns, "gw1", at, 0, 0};
    if (st == AddressState::kQuarantined) r.released_at = at + 60;
    v->ledger[r.ip] = r;
  };
  rec("203.0.113.10", "pay", AddressState::kAssigned, kT);
  rec("203.0.113.11", "pay-test", AddressState::kAssigned, kT + 10);
  rec("203.0.113.12", "web", AddressState::kAssigned, kT + 20);
  rec("203.0.113.13", "old", AddressState::kQuarantined, kT + 30);
  return v;
}

HttpResponse get(const ApiContext& ctx, const std::string& target,
                 std::vector<std::pair<std::string, std::string>> headers = {}) {
  auto req = HttpRequest::make("GET", target);
  for (auto& [k, val] : headers) req.headers.add(k, val);
  return apiRouter(ctx).dispatch(req);
}

TEST(Feeds, EachFirewallGetsItsOwnFormatOfTheLiveAddresses) {
  auto ctx = ApiContext::fixed(view());
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz").body, "203.0.113.10\n203.0.113.11\n203.0.113.12\n");
  EXPECT_EQ(get(ctx, "/feeds/fortigate/dmz").body, "203.0.113.10\n203.0.113.11\n203.0.113.12\n");
  EXPECT_EQ(get(ctx, "/feeds/panos/dmz").body,
            "203.0.113.10 namespace pay\n203.0.113.11 namespace pay-test\n"
            "203.0.113.12 namespace web\n");
  auto cp = get(ctx, "/feeds/checkpoint/dmz");
  EXPECT_EQ(cp.content_type, "application/json");
  auto doc = nlohmann::json::parse(cp.body);
  EXPECT_EQ(doc["version"], "1.0");
  ASSERT_EQ(doc["objects"].size(), 3u);
  EXPECT_EQ(doc["objects"][0]["name"], "pay");
  EXPECT_EQ(doc["objects"][0]["ranges"], nlohmann::json::array({"203.0.113.10"}));
  // A stable UUID per namespace: the same name, the same id; version 5.
  const std::string id = doc["objects"][0]["id"];
  EXPECT_EQ(id, namespaceUuid("pay"));
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '5');
  EXPECT_NE(namespaceUuid("pay"), namespaceUuid("web"));
  // Beside each feed, its checksum.
  for (const char* f : {"edl", "panos", "fortigate", "checkpoint"}) {
    const std::string base = std::string("/feeds/") + f + "/dmz";
    EXPECT_EQ(get(ctx, base + ".sha256").body, sha256Hex(get(ctx, base).body)) << f;
  }
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n");
}

TEST(Feeds, ASelectionByLabelsNarrowsThePoolAndBadSelectionsAreRefused) {
  auto ctx = ApiContext::fixed(view());
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz?labels=team%3Dpayments").body, "203.0.113.10\n203.0.113.11\n");
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz?labels=team%3Dpayments,env%3Dprod").body, "203.0.113.10\n");
  auto none = get(ctx, "/feeds/edl/dmz?labels=team%3Dnobody");
  EXPECT_EQ(none.status, 200);
  EXPECT_EQ(none.body, "");
  EXPECT_TRUE(none.headers.get("X-Nsegress-Feed")) << "an empty list says so";
  for (const char* bad : {"team", "=x", "team%3Dpay ments", "a%3Db,,c%3Dd", "te$m%3Dx"}) {
    auto r = get(ctx, std::string("/feeds/edl/dmz?labels=") + bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find("labels"), std::string::npos) << r.body;
  }
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz?labels=" + std::string(2000, 'a')).status, 400);
  // Found by trying it as an attacker: none of these may widen or shift the
  // list. A key twice (the last value won: another team's addresses), the
  // parameter twice (the second was dropped), a misspelt or unknown
  // parameter, an empty selection, keys Kubernetes does not allow.
  for (const std::string q :
       {"labels=team%3Dpayments,team%3Ddata", "labels=team%3Dpayments&labels=env%3Dprod",
        "label=team%3Dpayments", "Labels=team%3Dpayments", "labels=", "labels",
        "labels=team%3Dpayments&x=1", "labels=%2F%3Dx", "labels=a%2F%2Fb%3Dx", "labels=-a%3Dx",
        "labels=a-%3Dx", "labels=team%3D-x"}) {
    auto r = get(ctx, "/feeds/edl/dmz?" + q);
    EXPECT_EQ(r.status, 400) << q << " → " << r.body;
  }
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz?labels=" + std::string(300, 'k') + "%3Dx").status, 400);
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz?labels=example.com%2Fteam%3Dpayments").status, 200)
      << "a prefixed key is a key";
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz?labels=team%3D").status, 200) << "an empty value is a value";
}

TEST(Feeds, AnAttackersPoolNamesAndDatesChangeNothing) {
  auto v = view();
  auto ctx = ApiContext::fixed(v);
  // A pool removed from the definitions: 404, though the ledger still
  // names it (its quarantined records).
  v->pools.erase("dmz");
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz").status, 404);
  EXPECT_EQ(get(ctx, "/feeds/checkpoint/dmz").status, 404);
  // A pool whose own name ends in .sha256 is served as itself.
  v->pools["dmz"].name = "dmz";
  v->pools["x.sha256"].name = "x.sha256";
  AddressRecord r{*IpAddress::parse("203.0.113.200"),
                  "x.sha256",
                  AddressState::kAssigned,
                  "pay",
                  "gw1",
                  kT,
                  0,
                  0};
  v->ledger[r.ip] = r;
  EXPECT_EQ(get(ctx, "/feeds/edl/x.sha256").body, "203.0.113.200\n");
  EXPECT_EQ(get(ctx, "/feeds/edl/x.sha256.sha256").body, sha256Hex("203.0.113.200\n"));
  // A date in the future is no validator.
  EXPECT_EQ(
      get(ctx, "/feeds/edl/dmz", {{"If-Modified-Since", "Sun, 06 Nov 2094 08:49:37 GMT"}}).status,
      200);
}

TEST(Feeds, NeverAnEmptyListThatLies) {
  auto ctx = ApiContext::fixed(view());
  // A pool without live addresses: empty, and a header says so.
  auto empty = get(ctx, "/feeds/edl/batch");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, "");
  EXPECT_TRUE(empty.headers.get("X-Nsegress-Feed"));
  EXPECT_FALSE(get(ctx, "/feeds/edl/dmz").headers.get("X-Nsegress-Feed"));
  // An unknown pool: 404, not an empty list.
  for (const char* f : {"edl", "panos", "fortigate", "checkpoint"})
    EXPECT_EQ(get(ctx, std::string("/feeds/") + f + "/nosuch").status, 404) << f;
  // A standby or a controller that has not loaded its ledger: 503.
  auto standby = ApiContext::fixed(view(), nullptr, {}, "not the leader");
  for (const char* f : {"edl", "panos", "fortigate", "checkpoint"}) {
    auto r = get(standby, std::string("/feeds/") + f + "/dmz");
    EXPECT_EQ(r.status, 503) << f;
    EXPECT_FALSE(r.headers.get("ETag")) << "nothing a firewall could cache";
  }
}

TEST(Feeds, ConditionalRequestsAnswer304OnlyForTheSameContent) {
  auto v = view();
  auto ctx = ApiContext::fixed(v);
  // A published view is immutable: a change publishes a new one (as the
  // controller does), which the feed cache notices.
  ctx.view = [&v] { return std::shared_ptr<const View>(v); };
  auto publish = [&v] { v = std::make_shared<View>(*v); };
  auto full = get(ctx, "/feeds/edl/dmz");
  const auto etag = full.headers.get("ETag");
  ASSERT_TRUE(etag);
  EXPECT_EQ(etag->front(), '"');
  EXPECT_EQ(full.headers.get("Last-Modified"), httpDate(kT + 90)) << "the quarantine at +30+60";
  EXPECT_EQ(full.headers.get("Cache-Control"), "no-cache");
  auto same = get(ctx, "/feeds/edl/dmz", {{"If-None-Match", *etag}});
  EXPECT_EQ(same.status, 304);
  EXPECT_EQ(same.body, "");
  EXPECT_EQ(same.headers.get("ETag"), etag);
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-None-Match", "\"x\", W/" + *etag}}).status, 304);
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-None-Match", "*"}}).status, 304);
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-None-Match", "\"other\""}}).status, 200);
  // If-None-Match wins over If-Modified-Since.
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz",
                {{"If-None-Match", "\"other\""}, {"If-Modified-Since", httpDate(kT + 500)}})
                .status,
            200);
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-Modified-Since", httpDate(kT + 90)}}).status, 304);
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-Modified-Since", httpDate(kT + 89)}}).status, 200);
  for (const char* junk : {"yesterday", "Thu, 99 Nov 2026 15:00:00 GMT", "", "0"})
    EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-Modified-Since", junk}}).status, 200) << junk;
  // The content changes: a new ETag, the old one gets the full answer.
  publish();
  v->ledger.erase(*IpAddress::parse("203.0.113.12"));
  auto changed = get(ctx, "/feeds/edl/dmz", {{"If-None-Match", *etag}});
  EXPECT_EQ(changed.status, 200);
  EXPECT_NE(changed.headers.get("ETag"), etag);
  // Where Last-Modified could miss a change, it is not sent: a selection by
  // labels (a namespace relabelled), a change in the second of the reconcile.
  EXPECT_FALSE(get(ctx, "/feeds/edl/dmz?labels=team%3Dweb").headers.get("Last-Modified"));
  publish();
  v->at = kT + 90;
  EXPECT_FALSE(get(ctx, "/feeds/edl/dmz").headers.get("Last-Modified"));
  EXPECT_EQ(get(ctx, "/feeds/edl/dmz", {{"If-Modified-Since", httpDate(kT + 500)}}).status, 200);
}

TEST(Feeds, HttpDatesRoundTripAndOnlyImfFixdateParses) {
  EXPECT_EQ(httpDate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(httpDate(kT), "Fri, 15 Jan 2027 08:00:00 GMT");
  EXPECT_EQ(parseHttpDate(httpDate(kT)), kT);
  EXPECT_EQ(httpDate(-1), "");
  EXPECT_EQ(httpDate(kMaxTime + 1), "");
  for (const char* bad : {"", "Friday, 15-Jan-27 08:00:00 GMT", "Fri Jan 15 08:00:00 2027",
                          "Fri, 15 Jan 2027 08:00:00 UTC", "Fri, 15 Jan 2027 08:00:00 GMTX"})
    EXPECT_FALSE(parseHttpDate(bad)) << bad;
}

TEST(Feeds, OnTheWireA304HasNoContentLengthAndHeadHasGetsLength) {
  auto ctx = ApiContext::fixed(view());
  Router router = apiRouter(ctx);
  boost::asio::io_context io;
  auto s = HttpServer::listen(io, "127.0.0.1", 0, router);
  ASSERT_TRUE(s) << s.error().message;
  std::thread t([&] { io.run(); });
  const std::string etag = *get(ctx, "/feeds/edl/dmz").headers.get("ETag");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((*s)->port());
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto send = [&](const std::string& req) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return std::string();
    (void)!write(fd, req.data(), req.size());
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    close(fd);
    return out;
  };
  const std::string out =
      send("GET /feeds/edl/dmz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nIf-None-Match: " + etag +
           "\r\n\r\n");
  // HEAD: GET's length, no body (a client checking the size must not see
  // an empty feed).
  const std::string head =
      send("HEAD /feeds/edl/dmz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  (*s).reset();
  io.stop();
  t.join();
  EXPECT_EQ(out.rfind("HTTP/1.1 304", 0), 0u) << out;
  EXPECT_EQ(out.find("Content-Length"), std::string::npos) << out;
  EXPECT_NE(out.find("ETag: " + etag), std::string::npos) << out;
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: 39\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "") << "no body";
}

}  // namespace
}  // namespace nsegress::controller
