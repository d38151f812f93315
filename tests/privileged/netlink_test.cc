// netlink/ against the real kernel, in a lab namespace.
#include <gtest/gtest.h>

#include "nsegress/gateway/address_provider.h"
#include "nsegress/gateway/snat_provider.h"
#include "nsegress/gateway/table_provider.h"
#include "nsegress/netlink/address.h"
#include "nsegress/netlink/conntrack.h"
#include "nsegress/netlink/ct_sync.h"
#include "nsegress/netlink/nft.h"
#include "privileged_test.h"

namespace nsegress::testing {
namespace {

using gateway::NftOp;
using K = NftOp::Kind;
IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

class NetlinkKernel : public LabTest {};

TEST_F(NetlinkKernel, ApplyThenObserveRoundTripsAndReplanIsEmpty) {
  lab::NetnsEnter in(lab->gw());
  auto nft = netlink::NftTable::open({"nsegress", "up0"});
  ASSERT_TRUE(nft) << nft.error().message;
  auto obs0 = (*nft)->observe();
  ASSERT_TRUE(obs0);
  EXPECT_FALSE(obs0->table_present);

  DesiredState d;
  NamespaceEgress a{
      "team-a", ip("203.0.113.10"), ip("2001:db8::10"), {ip("10.244.1.2"), ip("fd00::2")}};
  NamespaceEgress b{"team-b", std::nullopt, std::nullopt, {ip("10.244.2.2")}};
  d.namespaces = {a, b};
  ASSERT_TRUE((*nft)->apply(gateway::planTable(*obs0)));
  auto obs1 = (*nft)->observe();
  ASSERT_TRUE(obs1);
  ASSERT_TRUE((*nft)->apply(gateway::planAddresses(d, *obs1, {}).intent));
  ASSERT_TRUE((*nft)->apply(gateway::planSnat(d, *(*nft)->observe()).main));

  auto obs = (*nft)->observe();
  ASSERT_TRUE(obs) << obs.error().message;
  EXPECT_TRUE(obs->structure_ok);
  EXPECT_EQ(obs->snat.at(ip("10.244.1.2")), ip("203.0.113.10"));
  EXPECT_EQ(obs->snat.at(ip("fd00::2")), ip("2001:db8::10"));
  EXPECT_EQ(obs->tx_counter.at(ip("10.244.1.2")), "tx-team-a");
  EXPECT_EQ(obs->pending.at(ip("10.244.2.2")), "drop-team-b");
  EXPECT_EQ(obs->owned, (std::set<IpAddress>{ip("203.0.113.10"), ip("2001:db8::10")}));
  EXPECT_EQ(obs->counters.size(), 4u + std::size(gateway::kBuiltinCounters));

  // The planners, given the kernel's state (addresses now "present"), have nothing to do.
  EXPECT_TRUE(gateway::planTable(*obs).empty());
  EXPECT_TRUE(gateway::planAddresses(d, *obs, {ip("203.0.113.10"), ip("2001:db8::10")}).empty());
  EXPECT_TRUE(gateway::planSnat(d, *obs).empty());
  ASSERT_TRUE((*nft)->destroy());
  EXPECT_FALSE((*nft)->observe()->table_present);
}

TEST_F(NetlinkKernel, KernelRefusalNamesTheOpAndAbortsTheWholeTransaction) {
  lab::NetnsEnter in(lab->gw());
  auto nft = netlink::NftTable::open({"nsegress", "up0"});
  ASSERT_TRUE(nft);
  ASSERT_TRUE((*nft)->apply({NftOp{K::kCreateTable, "", {}, {}, ""}}));
  std::vector<NftOp> ops = {
      NftOp{K::kAddCounter, "a", {}, {}, "tx-a"},
      NftOp{K::kAddSnat, "a", ip("10.244.1.2"), ip("203.0.113.10"), ""},
      NftOp{K::kAddTx, "ghost", ip("10.244.9.9"), {}, "tx-ghost"},  // no such counter
  };
  auto r = (*nft)->apply(ops);
  ASSERT_FALSE(r);
  EXPECT_NE(
      r.error().message.find("op 2 (add accounting 10.244.9.9 -> tx-ghost (namespace ghost))"),
      std::string::npos)
      << r.error().message;
  auto obs = (*nft)->observe();
  ASSERT_TRUE(obs);
  EXPECT_TRUE(obs->snat.empty()) << "all or nothing";
  EXPECT_EQ(obs->counters.size(), std::size(gateway::kBuiltinCounters)) << "only the built-in ones";
}

TEST_F(NetlinkKernel, InAMessageOfManyElementsTheKernelsExtendedAckNamesTheOneRefused) {
  lab::NetnsEnter in(lab->gw());
  auto nft = netlink::NftTable::open({"nsegress", "up0"});
  ASSERT_TRUE(nft);
  ASSERT_TRUE((*nft)->apply(
      {NftOp{K::kCreateTable, "", {}, {}, ""}, NftOp{K::kAddCounter, "a", {}, {}, "tx-a"}}));
  std::vector<NftOp> ops;
  for (uint32_t i = 0; i < 600; ++i)
    ops.push_back(
        NftOp{K::kAddTx, "a", IpAddress::v4(0x0AF40000u + i), {}, i == 400 ? "tx-ghost" : "tx-a"});
  auto r = (*nft)->apply(ops);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("op 400 (add accounting 10.244.1.144 -> tx-ghost"),
            std::string::npos)
      << r.error().message;
  EXPECT_LT((*nft)->lastBatchMessages(), 10u) << "600 elements in a few messages";
  EXPECT_TRUE((*nft)->observe()->tx_counter.empty()) << "all or nothing";
  ops[400].counter = "tx-a";
  ASSERT_TRUE((*nft)->apply(ops));
  EXPECT_EQ((*nft)->observe()->tx_counter.size(), 600u);
}

TEST_F(NetlinkKernel, TamperedTableIsDetectedAsWrongStructure) {
  lab::NetnsEnter in(lab->gw());
  auto nft = netlink::NftTable::open({"nsegress", "up0"});
  ASSERT_TRUE(nft);
  ASSERT_TRUE((*nft)->apply({NftOp{K::kCreateTable, "", {}, {}, ""}}));
  EXPECT_TRUE((*nft)->observe()->structure_ok);
  lab::must("nft flush chain inet nsegress postrouting");
  EXPECT_FALSE((*nft)->observe()->structure_ok);
  // Another uplink name means another structure too.
  auto other = netlink::NftTable::open({"nsegress", "eth9"});
  ASSERT_TRUE(other);
  EXPECT_FALSE((*other)->observe()->structure_ok);
}

TEST_F(NetlinkKernel, AddressesAddRemoveIdempotentAndListed) {
  lab::NetnsEnter in(lab->gw());
  auto a = netlink::UplinkAddresses::open("up0");
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE((*a)->add(ip("203.0.113.10")));
  ASSERT_TRUE((*a)->add(ip("203.0.113.10"))) << "EEXIST is success";
  ASSERT_TRUE((*a)->add(ip("2001:db8::10")));
  auto l = (*a)->list();
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->count(ip("203.0.113.10")));
  EXPECT_TRUE(l->count(ip("2001:db8::10")));
  EXPECT_TRUE(l->count(ip("198.51.100.1")));
  ASSERT_TRUE((*a)->remove(ip("203.0.113.10")));
  ASSERT_TRUE((*a)->remove(ip("203.0.113.10"))) << "ENOENT is success";
  EXPECT_FALSE((*a)->list()->count(ip("203.0.113.10")));
  EXPECT_FALSE(netlink::UplinkAddresses::open("nosuch0"));
}

TEST_F(NetlinkKernel, GratuitousArpMovesAStaleNeighbourEntryWithoutTraffic) {
  // The upstream router still believes 203.0.113.10 is at another MAC (the
  // previous gateway). After the address is added here and announced, its
  // cache points at us without waiting for the entry to expire.
  lab->exec(lab->outside(),
            "ip neigh replace 203.0.113.10 lladdr 02:00:00:00:00:99 dev eth0 nud stale");
  std::string mac = lab->exec(lab->gw(), "cat /sys/class/net/up0/address");
  mac.erase(mac.find_last_not_of("\n") + 1);
  {
    lab::NetnsEnter in(lab->gw());
    auto a = netlink::UplinkAddresses::open("up0");
    auto g = netlink::GarpAnnouncer::open("up0", 3, std::chrono::milliseconds(50));
    ASSERT_TRUE(a && g);
    ASSERT_TRUE((*a)->add(ip("203.0.113.10")));
    (*g)->announce(ip("203.0.113.10"));
    ASSERT_TRUE(lab::eventually([&] { return (*g)->sent() == 3; }, std::chrono::seconds(3)));
    EXPECT_EQ((*g)->failed(), 0u);
  }
  EXPECT_TRUE(lab::eventually([&] {
    return lab->exec(lab->outside(), "ip neigh show 203.0.113.10 dev eth0").find(mac) !=
           std::string::npos;
  })) << lab->exec(lab->outside(), "ip neigh show dev eth0");
}

TEST_F(NetlinkKernel, ConntrackFlushIsExactAndCountsPerEgress) {
  lab->addPod("a1", "10.244.1.2");
  lab->addPod("b1", "10.244.2.2");
  lab->writeState(stateJson(
      {{"team-a", "203.0.113.10", {"10.244.1.2"}}, {"team-b", "203.0.113.11", {"10.244.2.2"}}}));
  lab->startServers();
  auto& gw = lab->startGateway(lab->statePath());
  ASSERT_TRUE(lab::eventually([&] { return gw.log().find("reconciled in") != std::string::npos; }))
      << gw.log();
  lab->send("a1", "udp", "fa", 20, 1, true);  // 20 flows
  lab->send("b1", "udp", "fb", 5, 1, true);   // 5 flows
  lab::NetnsEnter in(lab->gw());
  auto ct = netlink::Conntrack::open();
  ASSERT_TRUE(ct);
  auto counts = (*ct)->countByEgress();
  ASSERT_TRUE(counts) << counts.error().message;
  EXPECT_EQ((*counts)[ip("203.0.113.10")], 20u);
  EXPECT_EQ((*counts)[ip("203.0.113.11")], 5u);
  auto n = (*ct)->flush(gateway::ConntrackFlush{"team-a", ip("203.0.113.10"), {}});
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 20u);
  counts = (*ct)->countByEgress();
  EXPECT_EQ((*counts)[ip("203.0.113.10")], 0u);
  EXPECT_EQ((*counts)[ip("203.0.113.11")], 5u) << "no collateral";
}

// Conntrack sync's kernel side on the real kernel: the event socket reports
// each source-NATed flow; a dump of one address returns its flows; after
// they are deleted, a commit recreates every one (several netlink batches)
// with the same translation, and a second commit of the same flows replaces
// them (EEXIST handled), never fails.
TEST_F(NetlinkKernel, ConntrackSyncSeesDumpsAndRecreatesSourceNatedFlows) {
  lab->addPod("a1", "10.244.1.2");
  lab->writeState(stateJson({{"team-a", "203.0.113.10", {"10.244.1.2"}}}));
  lab->startServers();
  auto& gw = lab->startGateway(lab->statePath());
  ASSERT_TRUE(lab::eventually([&] { return gw.log().find("reconciled in") != std::string::npos; }))
      << gw.log();
  std::unique_ptr<netlink::ConntrackSync> sync;
  {
    lab::NetnsEnter in(lab->gw());
    auto s = netlink::ConntrackSync::open();
    ASSERT_TRUE(s) << s.error().message;
    sync = std::move(*s);
  }
  lab->send("a1", "udp", "cs", 600, 0, true);  // 600 flows, one each
  lab->send("a1", "tcp", "ct", 3, 1, true);
  size_t news = 0;
  ASSERT_TRUE(lab::eventually([&] {
    auto ev = sync->readEvents();
    EXPECT_TRUE(ev) << (ev ? "" : ev.error().message);
    if (ev)
      for (const auto& c : *ev)
        news += c.op == ctsync::Op::kUpsert && c.flow.egress == ip("203.0.113.10") &&
                c.flow.proto == 17;
    return news >= 500;
  })) << news;
  lab::NetnsEnter in(lab->gw());
  auto flows = sync->dump({ip("203.0.113.10")});
  ASSERT_TRUE(flows) << flows.error().message;
  ASSERT_GE(flows->size(), 500u);  // more than one netlink batch
  auto ct = netlink::Conntrack::open();
  ASSERT_TRUE(ct);
  ASSERT_TRUE((*ct)->flush(gateway::ConntrackFlush{"team-a", ip("203.0.113.10"), {}}));
  auto left = (*ct)->countByEgress();
  ASSERT_TRUE(left);
  EXPECT_EQ((*left)[ip("203.0.113.10")], 0u);
  auto c = sync->commit(*flows);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->created, flows->size())
      << "failed " << c->failed << ": " << strerror(c->first_error);
  EXPECT_EQ(c->failed, 0u);
  auto back = sync->dump({ip("203.0.113.10")});
  ASSERT_TRUE(back);
  std::set<std::tuple<uint8_t, IpAddress, uint16_t, uint16_t>> want, got;
  for (const auto& f : *flows) want.insert({f.proto, f.src, f.sport, f.nat_port});
  for (const auto& f : *back) got.insert({f.proto, f.src, f.sport, f.nat_port});
  EXPECT_EQ(got, want) << "the same flows with the same translated ports";
  auto again = sync->commit(*flows);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->replaced, flows->size());
  EXPECT_EQ(again->failed, 0u);
}

}  // namespace
}  // namespace nsegress::testing
