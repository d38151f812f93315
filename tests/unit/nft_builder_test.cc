// Golden tests of the nftables messages, in the manner of nftables' own
// tests/py: the rule set as libnftnl renders the bytecode. No privileges.
#include "nsegress/netlink/nft.h"

#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "nsegress/netlink/address.h"

namespace nsegress::netlink {
namespace {

using gateway::NftOp;
using K = NftOp::Kind;

TEST(NftBuilder, RulesAreOneMapLookupPerHook) {
  NftConfig c;
  c.uplink = "up0";
  auto rules = NftBuilder::renderRules(c);
  // The uplink name as the kernel compares it: 16 bytes, zero padded.
  const std::string nf4 = "  [ meta load nfproto => reg 1 ]\n  [ cmp eq reg 1 0x00000002 ]\n";
  const std::string nf6 = "  [ meta load nfproto => reg 1 ]\n  [ cmp eq reg 1 0x0000000a ]\n";
  const std::string oif =
      "  [ meta load oifname => reg 1 ]\n"
      "  [ cmp eq reg 1 0x00307075 0x00000000 0x00000000 0x00000000 ]\n";
  const std::string sa4 = "  [ payload load 4b @ network header + 12 => reg 1 ]\n";
  const std::string sa6 = "  [ payload load 16b @ network header + 8 => reg 1 ]\n";
  const std::string fwd = "forward: inet nsegress forward\n";
  const std::string post = "postrouting: inet nsegress postrouting\n";
  const std::string in = "input: inet nsegress input\n";
  auto l4 = [](int proto) {
    char buf[96];
    snprintf(buf, sizeof buf, "  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x%08x ]\n",
             proto);
    return std::string(buf);
  };
  const std::string est =
      "  [ ct load state => reg 1 ]\n"
      "  [ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ]\n"
      "  [ cmp eq reg 1 0x00000000 ]\n"
      "  [ objref type 1 name inbound ]\n  [ immediate reg 0 drop ]\n";
  const std::vector<std::string> want = {
      // anti-spoofing: strict reverse path for everything not from the uplink
      fwd +
          "  [ meta load iifname => reg 1 ]\n"
          "  [ cmp neq reg 1 0x00307075 0x00000000 0x00000000 0x00000000 ]\n"
          "  [ fib saddr . iif oif => reg 1 ]\n  [ cmp eq reg 1 0x00000000 ]\n"
          "  [ objref type 1 name spoofed ]\n  [ immediate reg 0 drop ]\n",
      fwd + nf4 + sa4 + "  [ objref sreg 1 set pending4 ]\n  [ immediate reg 0 drop ]\n",
      fwd + nf6 + sa6 + "  [ objref sreg 1 set pending6 ]\n  [ immediate reg 0 drop ]\n",
      fwd + nf4 + oif + sa4 + "  [ objref sreg 1 set tx4 ]\n",
      fwd + nf6 + oif + sa6 + "  [ objref sreg 1 set tx6 ]\n",
      // attribution by port: TCP and UDP through the port blocks (address .
      // port range in four 32-bit registers), per family
      post + nf4 + oif + l4(6) + sa4 +
          "  [ lookup reg 1 set blocks4 dreg 1 ]\n"
          "  [ nat snat ip addr_min reg 8 addr_max reg 10 proto_min reg 9 proto_max reg 11 ]\n",
      post + nf4 + oif + l4(17) + sa4 +
          "  [ lookup reg 1 set blocks4 dreg 1 ]\n"
          "  [ nat snat ip addr_min reg 8 addr_max reg 10 proto_min reg 9 proto_max reg 11 ]\n",
      post + nf6 + oif + l4(6) + sa6 +
          "  [ lookup reg 1 set blocks6 dreg 1 ]\n"
          "  [ nat snat ip6 addr_min reg 8 addr_max reg 13 proto_min reg 12 proto_max reg 17 ]\n",
      post + nf6 + oif + l4(17) + sa6 +
          "  [ lookup reg 1 set blocks6 dreg 1 ]\n"
          "  [ nat snat ip6 addr_min reg 8 addr_max reg 13 proto_min reg 12 proto_max reg 17 ]\n",
      post + nf4 + oif + sa4 +
          "  [ lookup reg 1 set snat4 dreg 1 ]\n  [ nat snat ip addr_min reg 1 ]\n",
      post + nf6 + oif + sa6 +
          "  [ lookup reg 1 set snat6 dreg 1 ]\n  [ nat snat ip6 addr_min reg 1 ]\n",
      // egress addresses accept replies only (and neighbour discovery)
      in + nf6 +
          "  [ meta load l4proto => reg 1 ]\n  [ cmp eq reg 1 0x0000003a ]\n"
          "  [ payload load 1b @ transport header + 0 => reg 1 ]\n"
          "  [ range eq reg 1 0x00000087 0x00000088 ]\n  [ immediate reg 0 accept ]\n",
      in + nf4 +
          "  [ payload load 4b @ network header + 16 => reg 1 ]\n"
          "  [ lookup reg 1 set owned4 ]\n" +
          est,
      in + nf6 +
          "  [ payload load 16b @ network header + 24 => reg 1 ]\n"
          "  [ lookup reg 1 set owned6 ]\n" +
          est,
  };
  ASSERT_EQ(rules.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(rules[i], want[i]) << "rule " << i;
}

struct Msg {
  uint16_t type;
  uint16_t flags;
  uint32_t seq;
};

std::vector<Msg> messages(const std::vector<char>& buf) {
  std::vector<Msg> out;
  int len = static_cast<int>(buf.size());
  for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
       nlh = mnl_nlmsg_next(nlh, &len)) {
    out.push_back({nlh->nlmsg_type, nlh->nlmsg_flags, nlh->nlmsg_seq});
  }
  EXPECT_EQ(len, 0) << "trailing bytes";
  return out;
}

uint16_t nft(uint16_t m) {
  return static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | m);
}

TEST(NftBuilder, OneBatchAndEachMessageMapsBackToItsOp) {
  NftConfig c;
  c.uplink = "up0";
  NftBuilder b(c, 100);
  std::vector<NftOp> ops = {
      {K::kAddCounter, "a", {}, {}, "tx-a"},
      {K::kAddSnat, "a", *IpAddress::parse("10.244.1.2"), *IpAddress::parse("203.0.113.10"), ""},
      {K::kAddTx, "a", *IpAddress::parse("10.244.1.2"), {}, "tx-a"},
      {K::kDelPending, "a", *IpAddress::parse("10.244.1.2"), {}, ""},
  };
  for (size_t i = 0; i < ops.size(); ++i) b.append(ops[i], i);
  auto msgs = messages(b.finish());
  ASSERT_EQ(msgs.size(), 6u);
  EXPECT_EQ(msgs.front().type, NFNL_MSG_BATCH_BEGIN);
  EXPECT_EQ(msgs.back().type, NFNL_MSG_BATCH_END);
  EXPECT_EQ(msgs[1].type, nft(NFT_MSG_NEWOBJ));
  EXPECT_EQ(msgs[2].type, nft(NFT_MSG_NEWSETELEM));
  EXPECT_EQ(msgs[3].type, nft(NFT_MSG_NEWSETELEM));
  EXPECT_EQ(msgs[4].type, nft(NFT_MSG_DELSETELEM));
  for (size_t i = 1; i + 1 < msgs.size(); ++i) {
    EXPECT_TRUE(msgs[i].flags & NLM_F_REQUEST);
    EXPECT_FALSE(msgs[i].flags & NLM_F_ACK) << "errors only: acks would not scale";
    auto op = b.opFor(msgs[i].seq);
    ASSERT_TRUE(op);
    EXPECT_EQ(*op, i - 1);
  }
  EXPECT_FALSE(b.opFor(msgs.front().seq));
  EXPECT_FALSE(b.opFor(9999));
}

TEST(NftBuilder, CreateTableIsTableSetsChainsRulesUnderOneOp) {
  NftConfig c;
  c.uplink = "up0";
  NftBuilder b(c, 1);
  b.append(NftOp{K::kCreateTable, "", {}, {}, ""}, 7);
  auto msgs = messages(b.finish());
  // begin + table + 19 sets + 6 counters + 3 chains + 14 rules + end
  ASSERT_EQ(msgs.size(), 1u + 1 + 19 + 6 + 3 + 14 + 1);
  EXPECT_EQ(msgs[1].type, nft(NFT_MSG_NEWTABLE));
  for (size_t i = 2; i < 21; ++i) EXPECT_EQ(msgs[i].type, nft(NFT_MSG_NEWSET));
  EXPECT_EQ(msgs[21].type, nft(NFT_MSG_NEWOBJ)) << "the counters the rules name, before them";
  for (size_t i = 1; i + 1 < msgs.size(); ++i) EXPECT_EQ(*b.opFor(msgs[i].seq), 7u);
}

// With steering (a tunnel, cluster ranges, a dedicated uplink) the table
// gains the prerouting chain `steer`; every rule still belongs to the one op.
TEST(NftBuilder, SteeringAddsItsChainAndRules) {
  NftConfig c;
  c.uplink = "up0";
  c.steer = true;
  c.tunnel = "nsegress0";
  c.underlay = "eth0";
  c.tunnel_port = 4793;
  c.mss4 = 1410;
  c.mss6 = 1390;
  c.cluster = {*Cidr::parse("10.244.0.0/16"), *Cidr::parse("fd00:244::/32")};
  c.uplink_dedicated = true;
  const auto rules = NftBuilder::renderRules(c);
  std::map<std::string, int> per_chain;
  for (const auto& r : rules) per_chain[r.substr(0, r.find(':'))]++;
  // forward: 2 clamps, mark clear, 2 tunnel-to-steered-pod replies only, 4 unsteered
  // (unmarked, invalid/untracked x 2 families), steered flows by their device only,
  // steered replies, spoof, 2 pending, 2 tx
  EXPECT_EQ(per_chain["forward"], 16);
  // steer: uplink (3 maps + 1 range) x 2 families + nodes, 2 return, 2 steer, 2 restores
  EXPECT_EQ(per_chain["steer"], 15);
  // postrouting: 2 steered-out, 4 port blocks, 2 snat
  EXPECT_EQ(per_chain["postrouting"], 8);
  // input: ND, 2 inbound, 3 foreign (device, reverse path, nodes), 2 replies, 2 peers,
  // other ethertypes
  EXPECT_EQ(per_chain["input"], 11);
  NftBuilder b(c, 1);
  b.append(NftOp{K::kCreateTable, "", {}, {}, ""}, 3);
  auto msgs = messages(b.finish());
  // begin + table + 19 sets + 6 counters + 4 chains + 50 rules + end
  ASSERT_EQ(msgs.size(), 1u + 1 + 19 + 6 + 4 + 50 + 1);
  // Another configuration is another structure (a rebuild).
  NftConfig plain;
  plain.uplink = "up0";
  EXPECT_NE(structureFingerprint(c), structureFingerprint(plain));
}

// The element attributes of a NEWSETELEM/DELSETELEM message, as offsets
// from the message start (an independent walk of the bytes).
std::vector<uint32_t> elementOffsets(const nlmsghdr* nlh) {
  std::vector<uint32_t> out;
  const char* base = reinterpret_cast<const char*>(nlh);
  size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
  while (off + sizeof(nlattr) <= nlh->nlmsg_len) {
    const auto* a = reinterpret_cast<const nlattr*>(base + off);
    if ((a->nla_type & NLA_TYPE_MASK) == NFTA_SET_ELEM_LIST_ELEMENTS) {
      size_t e = off + NLA_HDRLEN;
      while (e + sizeof(nlattr) <= off + a->nla_len) {
        out.push_back(static_cast<uint32_t>(e));
        e += NLA_ALIGN(reinterpret_cast<const nlattr*>(base + e)->nla_len);
      }
    }
    off += NLA_ALIGN(a->nla_len);
  }
  return out;
}

TEST(NftBuilder, ElementsInARowShareMessagesAndAKernelErrorOffsetNamesTheElement) {
  NftConfig c;
  c.uplink = "up0";
  NftBuilder b(c, 1);
  for (uint32_t i = 0; i < 20000; ++i)
    b.append(
        NftOp{K::kAddSnat, "a", IpAddress::v4(0x0A000000u + i), IpAddress::v4(0xCB007101u), ""}, i);
  b.append(NftOp{K::kAddCounter, "a", {}, {}, "tx-a"}, 20000);  // ends the run of elements
  b.append(NftOp{K::kAddTx, "a", IpAddress::v4(0x0A000000u), {}, "tx-a"}, 20001);
  const auto& bytes = b.finish();
  const size_t per = NftBuilder::kElementsPerMessage;
  const size_t element_msgs = (20000 + per - 1) / per;
  ASSERT_EQ(messages(bytes).size(), element_msgs + 2 /*counter, tx*/ + 2 /*begin, end*/);
  // Walk to the message holding op 12345 and take its element's offset.
  int len = static_cast<int>(bytes.size());
  std::vector<const nlmsghdr*> msgs;
  for (auto* nlh = reinterpret_cast<const nlmsghdr*>(bytes.data()); mnl_nlmsg_ok(nlh, len);
       nlh = mnl_nlmsg_next(nlh, &len))
    msgs.push_back(nlh);
  const nlmsghdr* m = msgs[1 + 12345 / per];
  auto offs = elementOffsets(m);
  ASSERT_EQ(offs.size(), per);
  EXPECT_EQ(*b.opFor(m->nlmsg_seq, offs[12345 % per]), 12345u);
  EXPECT_FALSE(b.opFor(m->nlmsg_seq)) << "several ops, no offset: not one op";
  EXPECT_EQ(*b.opsOf(m->nlmsg_seq), (std::pair<size_t, size_t>{12288, 12543}));
  EXPECT_FALSE(b.opFor(m->nlmsg_seq, 3)) << "an offset that is no element";
  EXPECT_EQ(*b.opFor(msgs[msgs.size() - 2]->nlmsg_seq), 20001u);
}

TEST(Garp, ScheduleSpacesEachSeriesAndARepeatRestartsIt) {
  using std::chrono::milliseconds;
  GarpSchedule s(3, milliseconds(200));
  const Clock::TimePoint t0{std::chrono::hours(1)};
  const auto a = *IpAddress::parse("203.0.113.10"), b = *IpAddress::parse("203.0.113.11");
  s.add(a, t0);
  s.add(*IpAddress::parse("2001:db8::1"), t0);  // IPv6: the kernel's own NAs
  EXPECT_EQ(s.due(t0), std::vector<IpAddress>{a});
  EXPECT_EQ(*s.next(), t0 + milliseconds(200));
  EXPECT_TRUE(s.due(t0 + milliseconds(199)).empty());
  s.add(b, t0 + milliseconds(100));
  EXPECT_EQ(s.due(t0 + milliseconds(100)), std::vector<IpAddress>{b});
  EXPECT_EQ(s.due(t0 + milliseconds(200)), std::vector<IpAddress>{a});
  s.add(a, t0 + milliseconds(250));  // moved again: a new series of 3, not a second one
  EXPECT_EQ(s.due(t0 + milliseconds(300)), (std::vector<IpAddress>{a, b}));
  EXPECT_EQ(s.due(t0 + milliseconds(450)), std::vector<IpAddress>{a});
  EXPECT_EQ(s.due(t0 + milliseconds(500)), std::vector<IpAddress>{b});
  EXPECT_EQ(s.due(t0 + milliseconds(650)), std::vector<IpAddress>{a});
  EXPECT_TRUE(s.empty());
  EXPECT_FALSE(s.next());
}

TEST(NftBuilder, FingerprintCoversUplink) {
  NftConfig a, b;
  a.uplink = "up0";
  b.uplink = "eth1";
  EXPECT_NE(structureFingerprint(a), structureFingerprint(b));
}

TEST(Garp, FrameIsAnArpAnnouncement) {
  const uint8_t mac[6] = {0x02, 0, 0, 0, 0, 0x01};
  auto f = buildGratuitousArp(mac, *IpAddress::parse("203.0.113.10"));
  ASSERT_EQ(f.size(), 28u);
  EXPECT_EQ(f[7], 1);  // request
  EXPECT_EQ(0, memcmp(&f[8], mac, 6));
  const uint8_t ip[4] = {203, 0, 113, 10};
  EXPECT_EQ(0, memcmp(&f[14], ip, 4)) << "sender address";
  EXPECT_EQ(0, memcmp(&f[24], ip, 4)) << "target address equals sender";
  for (int i = 18; i < 24; ++i) EXPECT_EQ(f[i], 0);
}

}  // namespace
}  // namespace nsegress::netlink
