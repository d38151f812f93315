// The failover state files the controller reads at start (leases.json,
// drained.json): hostile or broken contents are refused with a message
// naming the file — the controller refuses to start rather than guess who
// owns an address — and nothing else is touched. And the drain route.
#include <gtest/gtest.h>

#include "nsegress/controller/api.h"
#include "nsegress/controller/lease_service.h"
#include "temp_dir.h"

using namespace nsegress;
using namespace nsegress::controller;

namespace {

Result<std::unique_ptr<LeaseService>> openWith(const std::string& dir) {
  LeaseService::Options o{"127.0.0.1:47951", "lease-files-test-key-0123", {}, {}};
  return LeaseService::open(o, std::make_unique<LeaseFile>(dir + "/leases.json"), {});
}

}  // namespace

TEST(LeaseFiles, ABrokenLeaseFileRefusesStartAndAGoodOneRestoresOwners) {
  nsegress::testing::TempDir d("leases");
  for (const std::string& bad :
       std::vector<std::string>{"", "{", "[]", "null", "{\"203.0.113.10\": 1}",
                                "{\"not-an-ip\": {\"owner\": \"gw1\", "
                                "\"epoch\": 2}}",
                                "{\"203.0.113.10\": {\"owner\": 7, \"epoch\": 2}}",
                                "{\"203.0.113.10\": {\"owner\": \"gw1\", \"epoch\": -2}}",
                                "{\"203.0.113.10\": {\"owner\": \"gw1\"}}",
                                std::string(1, '\xff') + "{}", std::string(20000, '[')}) {
    d.write("leases.json", bad);
    auto s = openWith(d.path);
    EXPECT_FALSE(s) << "accepted: " << bad.substr(0, 60);
    if (!s) {
      EXPECT_NE(s.error().message.find("leases.json"), std::string::npos) << s.error().message;
    }
  }
  d.write("leases.json", "{\"203.0.113.10\": {\"owner\": \"gw2\", \"epoch\": 3}}");
  auto s = openWith(d.path);
  ASSERT_TRUE(s) << s.error().message;
  auto l = (*s)->leases();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l.begin()->second.owner, "gw2");
  EXPECT_EQ(l.begin()->second.epoch, 3u);
}

TEST(LeaseFiles, TheDrainedListIsExactlyAListOfNodeNames) {
  nsegress::testing::TempDir d("drained");
  auto none = readDrained(d.path + "/drained.json");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty()) << "missing: nobody is drained";
  for (const std::string& bad :
       std::vector<std::string>{"", "{}", "[1]", "[\"Not_A_Node\"]", "[\"gw1\", null]", "\"gw1\"",
                                std::string(5000, '[')}) {
    d.write("drained.json", bad);
    auto r = readDrained(d.path + "/drained.json");
    EXPECT_FALSE(r) << "accepted: " << bad.substr(0, 40);
  }
  ASSERT_TRUE(writeDrained(d.path + "/drained.json", {"gw-1", "gw2.example"}));
  auto r = readDrained(d.path + "/drained.json");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (std::set<std::string>{"gw-1", "gw2.example"}));
}

TEST(LeaseFiles, TheDrainRouteTakesOnlyANodeNameFromThisHost) {
  std::set<std::string> drained;
  ApiContext ctx = ApiContext::fixed(std::make_shared<View>());
  ctx.drain = [&](const std::string& node, bool on) -> Result<std::set<std::string>> {
    if (on)
      drained.insert(node);
    else
      drained.erase(node);
    return drained;
  };
  const Router r = apiRouter(ctx, true);
  auto call = [&](const std::string& target, const std::string& peer, const std::string& host) {
    auto q = HttpRequest::make("POST", target);
    q.peer = peer;
    q.headers.set("host", host);
    return r.dispatch(q);
  };
  EXPECT_EQ(call("/api/v1/drain?node=gw1", "192.0.2.9", "127.0.0.1:8080").status, 403);
  EXPECT_EQ(call("/api/v1/drain?node=gw1", "127.0.0.1", "evil.example").status, 403);
  EXPECT_EQ(call("/api/v1/drain?node=../x", "127.0.0.1", "127.0.0.1:8080").status, 400);
  EXPECT_EQ(call("/api/v1/drain", "127.0.0.1", "127.0.0.1:8080").status, 400);
  EXPECT_TRUE(drained.empty());
  EXPECT_EQ(call("/api/v1/drain?node=gw1", "127.0.0.1", "localhost:8080").status, 200);
  EXPECT_EQ(drained, std::set<std::string>{"gw1"});
  EXPECT_EQ(call("/api/v1/drain?node=gw1&undo=1", "127.0.0.1", "localhost").status, 200);
  EXPECT_TRUE(drained.empty());
}
