#include "nsegress/common/desired_state.h"

#include <gtest/gtest.h>

namespace nsegress {
namespace {

const char* kGood = R"({
  "apiVersion": "nsegress.io/v1alpha1", "kind": "GatewayDesiredState",
  "gateway": "gw-1", "generation": 7,
  "namespaces": [
    {"name": "team-a", "egressIPs": ["203.0.113.10", "2001:db8::10"], "podIPs": ["10.244.1.2", "fd00::2"]},
    {"name": "team-b", "egressIPs": [], "podIPs": ["10.244.2.2"]}
  ]})";

TEST(DesiredState, ParsesAndRoundTrips) {
  auto s = parseDesiredState(kGood);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->gateway, "gw-1");
  EXPECT_EQ(s->generation, 7u);
  ASSERT_EQ(s->namespaces.size(), 2u);
  EXPECT_EQ(s->namespaces[0].egress_v4->str(), "203.0.113.10");
  EXPECT_EQ(s->namespaces[0].egress_v6->str(), "2001:db8::10");
  EXPECT_FALSE(s->namespaces[1].egress_v4);
  auto again = parseDesiredState(serializeDesiredState(*s));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *s);
}

struct BadCase {
  std::string json;
  std::string field;  // the error must name this
};

class DesiredStateMalformed : public ::testing::TestWithParam<BadCase> {};

TEST_P(DesiredStateMalformed, RejectedWithFieldNamed) {
  auto s = parseDesiredState(GetParam().json);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find(GetParam().field), std::string::npos)
      << "error was: " << s.error().message;
}

std::string doc(const std::string& namespaces, const std::string& extra = "") {
  return R"({"apiVersion":"nsegress.io/v1alpha1","kind":"GatewayDesiredState",)" + extra +
         R"("namespaces":)" + namespaces + "}";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DesiredStateMalformed,
    ::testing::Values(
        BadCase{"{not json", "not valid JSON"}, BadCase{"[]", "document"},
        BadCase{R"({"kind":"GatewayDesiredState","namespaces":[]})", "apiVersion"},
        BadCase{R"({"apiVersion":"nsegress.io/v1alpha1","kind":"X","namespaces":[]})", "kind"},
        BadCase{doc("[]", R"("surprise":1,)"), "surprise: unknown field"},
        BadCase{doc("[]", R"("generation":-1,)"), "generation"},
        BadCase{doc("{}"), "namespaces: must be a list"},
        BadCase{doc(R"([{"egressIPs":[],"podIPs":[]}])"), "namespaces[0].name"},
        BadCase{doc(R"([{"name":"Team_A","podIPs":[]}])"), "namespaces[0].name"},
        BadCase{doc(R"([{"name":"a","podIPs":[]},{"name":"a","podIPs":[]}])"),
                "namespaces[1].name"},
        BadCase{doc(R"([{"name":"a","egressIPs":["203.0.113.300"],"podIPs":[]}])"),
                "namespaces[0].egressIPs[0]"},
        BadCase{doc(R"([{"name":"a","egressIPs":["203.0.113.1","203.0.113.2"],"podIPs":[]}])"),
                "namespaces[0].egressIPs[1]"},
        BadCase{doc(R"([{"name":"a","egressIPs":[]}])"), "namespaces[0].podIPs: missing"},
        BadCase{doc(R"([{"name":"a","podIPs":["10.0.0.1",5]}])"), "namespaces[0].podIPs[1]"},
        BadCase{doc(R"([{"name":"a","podIPs":["10.0.0.1"]},{"name":"b","podIPs":["10.0.0.1"]}])"),
                "namespaces[1].podIPs[0]"},
        BadCase{doc(R"([{"name":"a","podIPs":[],"colour":"red"}])"),
                "namespaces[0].colour: unknown field"}));

}  // namespace
}  // namespace nsegress

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "nsegress/gateway/state_source.h"

namespace nsegress {
namespace {

// Hostile input to the gateway (issue 9): bounded before parsing, a
// duplicate key never silently wins, a path that is not a file never blocks.
TEST(DesiredStateHostile, DeepNestingIsRefusedNotACrash) {
  std::string deep = "{\"namespaces\":";
  for (int i = 0; i < 100000; ++i) deep += "[";
  auto r = parseDesiredState(deep);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("nested deeper than"), std::string::npos) << r.error().message;
}

TEST(DesiredStateHostile, ADuplicateKeyNeverWinsOverTheFirst) {
  const std::string good =
      R"({"apiVersion":"nsegress.io/v1alpha1","kind":"GatewayDesiredState",)"
      R"("namespaces":[{"name":"pay","egressIPs":["203.0.113.10"],"podIPs":["10.244.1.2"]}],)"
      R"("namespaces":[]})";
  auto r = parseDesiredState(good);
  ASSERT_FALSE(r) << "the second \"namespaces\" would have removed every mapping";
  EXPECT_NE(r.error().message.find("duplicate key \"namespaces\""), std::string::npos)
      << r.error().message;
  auto bad_utf8 = parseDesiredState(
      "{\"apiVersion\":\"nsegress.io/v1alpha1\",\"kind\":\"GatewayDesiredState\",\"gateway\":"
      "\"\xff\",\"namespaces\":[]}");
  EXPECT_FALSE(bad_utf8);
}

class StateFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = ::testing::TempDir() + "/nse-state-" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string dir;
};

TEST_F(StateFile, ASymlinkToADeviceOrAFifoIsRefusedWithoutReadingOrBlocking) {
  std::filesystem::create_symlink("/dev/zero", dir + "/zero.json");
  gateway::FileStateSource zero(dir + "/zero.json");
  auto z = zero.load();  // used to read 3 GB before looking at the size
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().message.find("not a regular file"), std::string::npos);
  ASSERT_EQ(mkfifo((dir + "/fifo.json").c_str(), 0600), 0);
  gateway::FileStateSource fifo(dir + "/fifo.json");
  auto f = fifo.load();  // used to block forever
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().message.find("not a regular file"), std::string::npos);
}

TEST_F(StateFile, AFileOverTheLimitIsRefusedBeforeItIsRead) {
  {
    std::ofstream out(dir + "/big.json");
    out.seekp(static_cast<std::streamoff>(kMaxDesiredStateBytes) + 10);
    out << "x";
  }
  gateway::FileStateSource big(dir + "/big.json");
  auto r = big.load();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EFBIG);
}

TEST(DesiredStateHostile, BlockedAddressesRoundTripAndMayNotAlsoBeAPodOfANamespace) {
  DesiredState s;
  s.namespaces = {
      NamespaceEgress{"pay", std::nullopt, std::nullopt, {*IpAddress::parse("10.0.0.1")}}};
  s.blocked = {*IpAddress::parse("10.0.0.9")};
  auto r = parseDesiredState(serializeDesiredState(s));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, s);
  s.blocked.push_back(*IpAddress::parse("10.0.0.1"));
  auto clash = parseDesiredState(serializeDesiredState(s));
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().message.find("blockedIPs[1]"), std::string::npos);
}

}  // namespace
}  // namespace nsegress
