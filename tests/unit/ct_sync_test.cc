// Conntrack sync: the wire (strict, authenticated) and the pure protocol
// (CtSyncCore): changes reach the standby, any loss shows as a gap, is
// counted and is followed by a resync that leaves exactly the owner's
// flows; replays are ignored; the cache is bounded; a takeover takes the
// address's flows. The kernel side is tested in tests/privileged.
#include <gtest/gtest.h>

#include "nsegress/common/ct_sync_wire.h"
#include "nsegress/common/peer_wire.h"
#include "nsegress/gateway/ct_sync.h"

using namespace nsegress;
using namespace nsegress::ctsync;
using gateway::CtSyncCore;

namespace {

const std::string kKey = "sync-test-key-0123456789";
IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}
const IpAddress kEgress = ip("203.0.113.10");
const IpAddress kOther = ip("203.0.113.11");

Flow flow(uint16_t sport, IpAddress egress = kEgress, uint8_t proto = 6) {
  Flow f;
  f.proto = proto;
  f.src = ip("10.244.1.2");
  f.dst = ip("198.51.100.2");
  f.sport = sport;
  f.dport = 443;
  f.egress = egress;
  f.nat_port = sport;
  f.tcp_state = proto == 6 ? 3 : 0;  // ESTABLISHED
  f.assured = true;
  return f;
}

CtSyncCore::Time at(int ms) {
  return CtSyncCore::Time{} + std::chrono::milliseconds(ms);
}

// Delivers `out` (owner → standby) through the wire, dropping those whose
// index is in `drop`; returns what the standby sends back.
std::vector<Datagram> deliver(const CtSyncCore::Out& out, CtSyncCore& standby, int now,
                              std::set<size_t> drop = {}) {
  std::vector<Datagram> back;
  for (size_t i = 0; i < out.size(); ++i) {
    if (drop.count(i)) continue;
    auto d = decode(encode(out[i].second, kKey), kKey);
    EXPECT_TRUE(d) << d.error().message;
    auto r = standby.onDatagram(*d, at(now));
    if (r.reply) back.push_back(*r.reply);
  }
  return back;
}

struct Pair {
  CtSyncCore owner{"gw1", 111};
  CtSyncCore standby{"gw2", 222};
  Pair() {
    standby.setStandbyFor({kEgress});
    auto gained = owner.setOwned({{kEgress, "gw2"}});
    EXPECT_EQ(gained["gw2"], std::set<IpAddress>{kEgress});
  }
  // The owner answers the standby's requests with a dump of `kernel`.
  void answer(const std::vector<Datagram>& requests, const std::vector<Flow>& kernel, int now) {
    for (const auto& q : requests) {
      auto r = owner.onDatagram(q, at(now));
      ASSERT_TRUE(r.resync);
      deliver(owner.resync(r.resync->first, r.resync->second, kernel), standby, now);
    }
  }
};

}  // namespace

TEST(CtSyncWire, RoundTripsAndRefusesWhatIsNotExactlyRight) {
  Datagram d;
  d.kind = Kind::kEvents;
  d.from = "gw1";
  d.stream = 7;
  d.seq = 3;
  d.generation = 2;
  d.changes = {{Op::kUpsert, flow(40000)}, {Op::kDelete, flow(40001, kOther, 17)}};
  Flow v6 = flow(5);
  v6.src = ip("fd00::2");
  v6.dst = ip("2001:db8::1");
  v6.egress = ip("2001:db8:1::10");
  d.changes.push_back({Op::kUpsert, v6});
  const std::string bytes = encode(d, kKey);
  auto back = decode(bytes, kKey);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, d);

  EXPECT_FALSE(decode(bytes, "another-key-0123456789"));          // unauthenticated
  EXPECT_FALSE(decode(bytes.substr(0, bytes.size() - 1), kKey));  // truncated (MAC fails)
  // Every single-byte change of the body is refused (the MAC covers it).
  for (size_t i = 36; i < bytes.size(); i += 7) {
    std::string b = bytes;
    b[i] ^= 0x01;
    EXPECT_FALSE(decode(b, kKey)) << i;
  }
  EXPECT_FALSE(decode(std::string(kMaxDatagram + 1, 'x'), kKey));
  EXPECT_FALSE(decode("NSC1", kKey));
  EXPECT_FALSE(decode("", kKey));

  // Well signed but wrong inside: each is refused with a reason.
  auto resign = [&](std::string body) { return "NSC1" + ownership::hmacSha256(kKey, body) + body; };
  const std::string body = bytes.substr(36);
  auto refused = [&](std::string b, const char* why) {
    auto r = decode(resign(std::move(b)), kKey);
    EXPECT_FALSE(r) << why;
    if (!r) {
      EXPECT_NE(r.error().message.find("conntrack sync"), std::string::npos);
    }
  };
  refused(body + "x", "trailing byte");
  refused(body.substr(0, body.size() - 1), "truncated change");
  {
    std::string b = body;
    b[0] = 9;  // kind
    refused(b, "unknown kind");
  }
  {
    std::string b = body;
    b[2] = '_';  // node name "_w1"
    refused(b, "bad node name");
  }
  // The first change starts after kind, len, "gw1", 3 × u64, 2 counts.
  const size_t c0 = 1 + 1 + 3 + 24 + 2 + 2;
  for (auto [off, v, why] : {std::tuple{0, 3, "op"},
                             {1, 5, "family"},
                             {2, 1, "protocol ICMP"},
                             {3, 10, "TCP state"},
                             {4, 2, "flags"}}) {
    std::string b = body;
    b[c0 + off] = static_cast<char>(v);
    refused(b, why);
  }
  {
    std::string b = body;
    b[c0 + 5 + 10] = 1;  // a non-zero byte in an IPv4 address's padding
    refused(b, "IPv4 padding");
  }
  {
    Datagram k;
    k.kind = Kind::kKeepalive;
    k.from = "gw1";
    std::string b = encode(k, kKey).substr(36);
    b[b.size() - 1] = 1;  // a keepalive claiming a change
    refused(b, "changes in a keepalive");
  }
}

TEST(CtSyncCore, ChangesReachTheStandbyAndATakeoverTakesThem) {
  Pair p;
  // The first word from a new sender asks for a resync (we may have missed
  // its beginning); the owner answers with its kernel's flows.
  auto req = deliver(p.owner.resync("gw2", {kEgress}, {flow(1)}), p.standby, 0);
  ASSERT_EQ(req.size(), 1u);
  p.answer(req, {flow(1)}, 0);
  EXPECT_EQ(p.standby.cacheSize(), 1u);

  p.owner.onKernelChanges({{Op::kUpsert, flow(2)},
                           {Op::kUpsert, flow(3)},
                           {Op::kUpsert, flow(4, kOther)},  // not owned: not sent
                           {Op::kDelete, flow(1)}});
  EXPECT_TRUE(deliver(p.owner.flush(), p.standby, 10).empty());
  EXPECT_EQ(p.standby.cacheSize(), 2u);
  EXPECT_EQ(p.standby.stats().datagrams_lost, 0u);
  // Keepalives with nothing missing ask for nothing.
  EXPECT_TRUE(deliver(p.owner.keepalives(), p.standby, 20).empty());

  auto taken = p.standby.take({kEgress});
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].sport + taken[1].sport, 5);
  EXPECT_EQ(p.standby.cacheSize(), 0u);
}

TEST(CtSyncCore, ALostDatagramIsCountedAndAResyncLeavesExactlyTheOwnersFlows) {
  Pair p;
  std::vector<Flow> kernel = {flow(1), flow(2)};
  p.answer(deliver(p.owner.resync("gw2", {kEgress}, kernel), p.standby, 0), kernel, 0);
  ASSERT_EQ(p.standby.cacheSize(), 2u);

  // flow 2 ends, flow 3 starts: the datagram is lost.
  p.owner.onKernelChanges({{Op::kDelete, flow(2)}, {Op::kUpsert, flow(3)}});
  kernel = {flow(1), flow(3)};
  auto lost = p.owner.flush();
  ASSERT_EQ(lost.size(), 1u);
  deliver(lost, p.standby, 1000, {0});
  EXPECT_EQ(p.standby.cacheSize(), 2u);  // still the stale view

  // The next datagram (or keepalive) shows the gap: counted, resync asked.
  p.owner.onKernelChanges({{Op::kUpsert, flow(4)}});
  kernel.push_back(flow(4));
  auto req = deliver(p.owner.flush(), p.standby, 1001);
  EXPECT_EQ(p.standby.stats().datagrams_lost, 1u);
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(req[0].kind, Kind::kResyncRequest);
  p.answer(req, kernel, 1001);
  auto taken = p.standby.take({kEgress});
  std::set<uint16_t> ports;
  for (const auto& f : taken) ports.insert(f.sport);
  EXPECT_EQ(ports, (std::set<uint16_t>{1, 3, 4}));  // 2 is gone, 3 arrived
}

TEST(CtSyncCore, TheLossOfTheLastDatagramShowsAtTheNextKeepalive) {
  Pair p;
  p.answer(deliver(p.owner.resync("gw2", {kEgress}, {}), p.standby, 0), {}, 0);
  p.owner.onKernelChanges({{Op::kUpsert, flow(9)}});
  deliver(p.owner.flush(), p.standby, 500, {0});
  auto req = deliver(p.owner.keepalives(), p.standby, 750);
  ASSERT_EQ(req.size(), 1u);
  EXPECT_EQ(p.standby.stats().datagrams_lost, 1u);
  p.answer(req, {flow(9)}, 750);
  EXPECT_EQ(p.standby.cacheSize(), 1u);
}

TEST(CtSyncCore, ReplaysAreIgnoredAndRequestsAreRateLimited) {
  Pair p;
  auto first = p.owner.resync("gw2", {kEgress}, {flow(1)});
  auto req = deliver(first, p.standby, 0);
  p.answer(req, {flow(1)}, 0);
  p.owner.onKernelChanges({{Op::kDelete, flow(1)}});
  auto del = p.owner.flush();
  deliver(del, p.standby, 10);
  EXPECT_EQ(p.standby.cacheSize(), 0u);
  // An attacker on the path replays the old resync (authentic bytes).
  deliver(first, p.standby, 20);
  EXPECT_EQ(p.standby.cacheSize(), 0u);
  EXPECT_GE(p.standby.stats().stale, 1u);

  // A burst of gaps asks at most once per 200 ms.
  CtSyncCore other("gw3", 333);
  other.setOwned({{kEgress, "gw2"}});
  size_t asked = 0;
  for (int i = 0; i < 10; ++i) {
    other.onKernelChanges({{Op::kUpsert, flow(static_cast<uint16_t>(100 + i))}});
    asked +=
        deliver(other.flush(), p.standby, 100 + i, i % 2 ? std::set<size_t>{} : std::set<size_t>{0})
            .size();
  }
  EXPECT_EQ(asked, 1u);
}

TEST(CtSyncCore, TheCacheIsBoundedAndKeepsOnlyAddressesItStandsByFor) {
  CtSyncCore owner("gw1", 1);
  CtSyncCore standby("gw2", 2, /*max_cache=*/3);
  standby.setStandbyFor({kEgress});
  owner.setOwned({{kEgress, "gw2"}, {kOther, "gw2"}});
  std::vector<Change> ch;
  for (uint16_t i = 1; i <= 5; ++i) ch.push_back({Op::kUpsert, flow(i)});
  ch.push_back({Op::kUpsert, flow(6, kOther)});  // gw2 is not standby for it (its view)
  owner.onKernelChanges(ch);
  deliver(owner.flush(), standby, 0);
  EXPECT_EQ(standby.cacheSize(), 3u);
  EXPECT_EQ(standby.stats().cache_full, 2u);
  // No longer standby: the flows go.
  standby.setStandbyFor({});
  EXPECT_EQ(standby.cacheSize(), 0u);
}

TEST(CtSyncCore, ANewStandbyGetsEverythingAndAnOverrunResyncsAll) {
  CtSyncCore owner("gw1", 1);
  auto g = owner.setOwned({{kEgress, "gw2"}, {kOther, ""}});
  EXPECT_EQ(g.size(), 1u);  // an address without a standby sends nothing
  EXPECT_TRUE(owner.setOwned({{kEgress, "gw2"}, {kOther, ""}}).empty());
  g = owner.setOwned({{kEgress, "gw3"}, {kOther, "gw2"}});
  EXPECT_EQ(g["gw3"], std::set<IpAddress>{kEgress});
  EXPECT_EQ(g["gw2"], std::set<IpAddress>{kOther});
  auto all = owner.overrun();
  EXPECT_EQ(all.size(), 2u);
  // A queue that fills drops changes and counts them.
  CtSyncCore small("gw1", 1, 10, /*max_pending=*/2);
  small.setOwned({{kEgress, "gw2"}});
  small.onKernelChanges({{Op::kUpsert, flow(1)}, {Op::kUpsert, flow(2)}, {Op::kUpsert, flow(3)}});
  EXPECT_EQ(small.stats().pending_dropped, 1u);
  // A datagram never carries more than the wire allows.
  std::vector<Change> many;
  for (uint16_t i = 0; i < 2000; ++i) many.push_back({Op::kUpsert, flow(i)});
  CtSyncCore big("gw1", 1, 10, 100000);
  big.setOwned({{kEgress, "gw2"}});
  big.onKernelChanges(many);
  auto out = big.flush();
  ASSERT_EQ(out.size(), 3u);
  for (const auto& [peer, d] : out) EXPECT_LE(encode(d, kKey).size(), kMaxDatagram);
}
