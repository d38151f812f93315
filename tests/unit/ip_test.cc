#include "nsegress/common/ip.h"

#include <gtest/gtest.h>

namespace nsegress {
namespace {

TEST(IpAddress, ParsesV4AndV6) {
  auto a = IpAddress::parse("203.0.113.7");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->isV4());
  EXPECT_EQ(a->str(), "203.0.113.7");
  auto b = IpAddress::parse("2001:db8::7");
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->isV4());
  EXPECT_EQ(b->str(), "2001:db8::7");
}

TEST(IpAddress, RejectsMalformed) {
  for (const char* bad : {"", "203.0.113", "203.0.113.256", "203.0.113.7/32", " 203.0.113.7",
                          "203.0.113.7 ", "abc", "1.2.3.4.5", "2001:db8:::1", "::ffff:1.2.3"}) {
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
  }
}

TEST(IpAddress, PlusCarries) {
  EXPECT_EQ(IpAddress::parse("10.0.0.255")->plus(1).str(), "10.0.1.0");
  EXPECT_EQ(IpAddress::parse("2001:db8::ffff")->plus(1).str(), "2001:db8::1:0");
  EXPECT_EQ(IpAddress::parse("10.0.0.0")->plus(70000).str(), "10.1.17.112");
}

TEST(IpAddress, OrdersV4BeforeV6AndNumerically) {
  auto a = *IpAddress::parse("10.0.0.2"), b = *IpAddress::parse("10.0.0.10"),
       c = *IpAddress::parse("::1");
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
}

TEST(Cidr, ParsesNormalisesContains) {
  auto c = Cidr::parse("203.0.113.77/24");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->str(), "203.0.113.0/24");
  EXPECT_EQ(c->size(), 256u);
  EXPECT_EQ(c->last().str(), "203.0.113.255");
  EXPECT_TRUE(c->contains(*IpAddress::parse("203.0.113.200")));
  EXPECT_FALSE(c->contains(*IpAddress::parse("203.0.114.1")));
  EXPECT_FALSE(c->contains(*IpAddress::parse("::1")));
  auto v6 = Cidr::parse("2001:db8::/126");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->size(), 4u);
  EXPECT_EQ(v6->last().str(), "2001:db8::3");
}

TEST(Cidr, RejectsMalformed) {
  for (const char* bad : {"203.0.113.0", "203.0.113.0/33", "203.0.113.0/-1", "203.0.113.0/",
                          "203.0.113.0/2x", "x/24", "2001:db8::/129"}) {
    EXPECT_FALSE(Cidr::parse(bad)) << bad;
  }
}

}  // namespace
}  // namespace nsegress

TEST(Ipv4Port, OnlyAnIpv4AddressAndAPortFrom1To65535) {
  auto ok = nsegress::parseIpv4Port("192.0.2.1:4795");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->ip.str(), "192.0.2.1");
  EXPECT_EQ(ok->port, 4795);
  EXPECT_EQ(nsegress::parseIpv4Port("10.0.0.1:65535")->port, 65535);
  for (const char* bad :
       {"", ":", "192.0.2.1", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:4795abc",
        "192.0.2.1:+1", "192.0.2.1:-1", "192.0.2.1:000001", "fd00::1:4795", "[fd00::1]:4795",
        "host:4795", "192.0.2.300:1", " 192.0.2.1:1", "192.0.2.1:1 "})
    EXPECT_FALSE(nsegress::parseIpv4Port(bad)) << bad;
}
