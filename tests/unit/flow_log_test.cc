// The flow log: its record format (strict), the "who held ADDRESS:PORT at
// T" question over records (resyncs, losses, restarts, a port reused
// towards other destinations), and the writer and flow log over a fake
// event socket (segments, retention, losses marked and resynced).
#include "nsegress/common/flow_log.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fake_ct_events.h"
#include "nsegress/gateway/flow_log.h"

namespace nsegress::flowlog {
namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}
constexpr int64_t kT = 1'800'000'000'000;  // ms

Record flow(Record::Kind k, int64_t ms, uint16_t nat_port, const char* pod, uint16_t sport,
            const char* dst = "192.0.2.1", uint16_t dport = 443, uint8_t proto = 6) {
  return Record{k,     ms,    proto, ip("203.0.113.10"), nat_port, ip(pod), sport, ip(dst),
                dport, "pay", {}};
}
Record mark(Record::Kind k, int64_t ms) {
  Record r;
  r.kind = k;
  r.ms = ms;
  if (k == Record::Kind::kStart) r.node = "gw-1";
  return r;
}

TEST(FlowLogFormat, EveryKindRoundTrips) {
  for (const auto& r :
       {flow(Record::Kind::kNew, kT, 40000, "10.244.1.2", 5555),
        flow(Record::Kind::kDestroy, kT + 1, 40000, "10.244.1.2", 5555),
        flow(Record::Kind::kExists, kT + 2, 1, "10.244.1.2", 65535, "192.0.2.9", 53, 17),
        mark(Record::Kind::kResync, kT), mark(Record::Kind::kLost, kT),
        mark(Record::Kind::kStart, kT)}) {
    const std::string line = format(r);
    ASSERT_EQ(line.back(), '\n');
    auto back = parse(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(back) << line << back.error().message;
    EXPECT_EQ(*back, r) << line;
  }
  EXPECT_EQ(format(flow(Record::Kind::kNew, kT, 40000, "10.244.1.2", 5555)),
            "N\t1800000000000\t6\t203.0.113.10\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tpay\n");
}

TEST(FlowLogFormat, MalformedLinesAreRefusedNamingTheField) {
  const std::string good = "N\t1\t6\t203.0.113.10\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tpay";
  ASSERT_TRUE(parse(good));
  const std::pair<std::string, std::string> bad[] = {
      {"", "kind"},
      {"X\t1", "kind"},
      {"NN\t1", "kind"},
      {"N\t1", "fields"},
      {good + "\textra", "fields"},
      {"N\t-1\t6\t203.0.113.10\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tpay", "ms"},
      {"N\t1\t1\t203.0.113.10\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tpay", "proto"},
      {"N\t1\t6\tbanana\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tpay", "egress"},
      {"N\t1\t6\t203.0.113.10\t65536\t10.244.1.2\t5555\t192.0.2.1\t443\tpay", "nat_port"},
      {"N\t1\t6\t203.0.113.10\t40000\tfd00::1\t5555\t192.0.2.1\t443\tpay", "mixed families"},
      {"N\t1\t6\t203.0.113.10\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tPay!", "namespace"},
      {"N\t1\t6\t203.0.113.10\t40000\t10.244.1.2\t+5\t192.0.2.1\t443\tpay", "sport"},
      {"S\t1\t-bad-", "node"},
      {"R\t1\t2", "fields"},
      {std::string(600, 'N'), "512"},
      {"N\t99999999999999999999999\t6", "fields"},
      {std::string("N\t1\t6\t203.0.113.10\t40000\t10.244.1.2\t5555\t192.0.2.1\t443\tpa") + '\0' +
           "y",
       "namespace"},
  };
  for (const auto& [line, why] : bad) {
    auto r = parse(line);
    ASSERT_FALSE(r) << line;
    EXPECT_NE(r.error().message.find(why), std::string::npos)
        << line.substr(0, 40) << " -> " << r.error().message;
  }
}

TEST(FlowLogFormat, SegmentNamesAreHours) {
  EXPECT_EQ(segmentName(kT), "flows-500000.log");
  EXPECT_EQ(segmentHour("flows-500000.log"), 500000);
  for (const char* bad : {"flows-.log", "flows-12a.log", "flows-1.txt", "x-1.log", "flows--1.log"})
    EXPECT_FALSE(segmentHour(bad)) << bad;
}

std::vector<std::string> pods(const WhoHeld& w) {
  std::vector<std::string> out;
  for (const auto& h : w.holders()) out.push_back(h.flow.pod.str());
  return out;
}

TEST(FlowLogWho, AFlowHoldsItsPortFromItsStartToItsEnd) {
  const std::vector<Record> log = {mark(Record::Kind::kStart, kT), mark(Record::Kind::kResync, kT),
                                   flow(Record::Kind::kNew, kT + 10, 40000, "10.244.1.2", 5555),
                                   flow(Record::Kind::kDestroy, kT + 20, 40000, "10.244.1.2", 5555),
                                   flow(Record::Kind::kNew, kT + 30, 40000, "10.244.1.9", 7777)};
  auto ask = [&](int64_t at) {
    WhoHeld w(ip("203.0.113.10"), 40000, at);
    for (const auto& r : log) w.add(r);
    return w;
  };
  EXPECT_TRUE(pods(ask(kT + 5)).empty());
  EXPECT_EQ(pods(ask(kT + 10)), std::vector<std::string>{"10.244.1.2"});
  EXPECT_EQ(pods(ask(kT + 19)), std::vector<std::string>{"10.244.1.2"});
  EXPECT_TRUE(pods(ask(kT + 20)).empty());
  EXPECT_EQ(pods(ask(kT + 40)), std::vector<std::string>{"10.244.1.9"});
  EXPECT_TRUE(ask(kT + 40).complete());
  EXPECT_TRUE(ask(kT + 40).holders()[0].start_known);
}

TEST(FlowLogWho, APortReusedTowardsAnotherDestinationHasTwoHoldersUntilADestinationIsGiven) {
  WhoHeld any(ip("203.0.113.10"), 40000, kT + 100);
  WhoHeld to(ip("203.0.113.10"), 40000, kT + 100, std::pair{ip("192.0.2.7"), uint16_t{80}});
  for (auto* w : {&any, &to}) {
    w->add(mark(Record::Kind::kResync, kT));
    w->add(flow(Record::Kind::kNew, kT + 1, 40000, "10.244.1.2", 5555, "192.0.2.1", 443));
    w->add(flow(Record::Kind::kNew, kT + 2, 40000, "10.244.1.3", 6666, "192.0.2.7", 80));
    w->add(flow(Record::Kind::kNew, kT + 3, 40001, "10.244.1.4", 6666, "192.0.2.7", 80));
  }
  EXPECT_EQ(pods(any).size(), 2u);
  EXPECT_EQ(pods(to), std::vector<std::string>{"10.244.1.3"});
}

TEST(FlowLogWho, AResyncEndsFlowsWhoseEndWasLostAndListsThoseAlive) {
  WhoHeld w(ip("203.0.113.10"), 40000, kT + 100);
  w.add(mark(Record::Kind::kResync, kT));
  w.add(flow(Record::Kind::kNew, kT + 1, 40000, "10.244.1.2", 5555));
  w.add(flow(Record::Kind::kNew, kT + 2, 40000, "10.244.1.3", 6666, "192.0.2.7"));
  // Events lost (the first flow's end among them), then a resync that lists
  // only the second flow, and one that began during the loss.
  w.add(mark(Record::Kind::kLost, kT + 50));
  EXPECT_FALSE(w.complete());
  w.add(mark(Record::Kind::kResync, kT + 50));
  w.add(flow(Record::Kind::kExists, kT + 50, 40000, "10.244.1.3", 6666, "192.0.2.7"));
  w.add(flow(Record::Kind::kExists, kT + 50, 40000, "10.244.1.5", 8888, "192.0.2.8"));
  w.add(flow(Record::Kind::kNew, kT + 60, 40001, "10.244.1.6", 1, "192.0.2.8"));
  auto got = pods(w);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"10.244.1.3", "10.244.1.5"}));
  EXPECT_TRUE(w.complete()) << "the resync after the loss closed the gap";
  EXPECT_EQ(w.gaps(), std::vector<int64_t>{kT + 50});
  for (const auto& h : w.holders())
    EXPECT_EQ(h.start_known, h.flow.pod == ip("10.244.1.3")) << "E alone: start unknown";
}

TEST(FlowLogWho, ALossWithoutAResyncLeavesTheAnswerIncomplete) {
  WhoHeld w(ip("203.0.113.10"), 40000, kT + 100);
  w.add(mark(Record::Kind::kStart, kT));
  w.add(mark(Record::Kind::kResync, kT));
  w.add(mark(Record::Kind::kLost, kT + 10));  // its resync failed
  EXPECT_FALSE(w.complete());
  WhoHeld never(ip("203.0.113.10"), 40000, kT + 100);
  never.add(flow(Record::Kind::kNew, kT + 1, 40000, "10.244.1.2", 5555));
  EXPECT_FALSE(never.complete()) << "no resync seen: flows before the segment are unknown";
}

}  // namespace
}  // namespace nsegress::flowlog

namespace nsegress::gateway {
namespace {

namespace fs = std::filesystem;
using testing::FakeConntrackEvents;

ctsync::Flow ctFlow(const char* pod, uint16_t sport, uint16_t nat_port,
                    const char* egress = "203.0.113.10") {
  ctsync::Flow f;
  f.proto = 6;
  f.src = *IpAddress::parse(pod);
  f.dst = *IpAddress::parse("192.0.2.1");
  f.sport = sport;
  f.dport = 443;
  f.egress = *IpAddress::parse(egress);
  f.nat_port = nat_port;
  return f;
}

DesiredState hosting(const char* ns, const char* egress) {
  DesiredState d;
  d.gateway = "gw-1";
  NamespaceEgress e;
  e.name = ns;
  e.egress_v4 = *IpAddress::parse(egress);
  d.namespaces.push_back(e);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(FlowLogWriter, RecordsOnlyHostedAddressesMarksLossesAndAnswers) {
  const fs::path dir = fs::temp_directory_path() / "nsegress-flowlog-test";
  fs::remove_all(dir);
  FakeConntrackEvents k;
  int64_t now = 1'800'000'000'000;
  k.existing = {ctFlow("10.244.1.2", 1000, 40000)};
  FlowLogOptions o;
  o.dir = dir.string();
  o.node = "gw-1";
  FlowLog log(o, k, [&] { return now; });
  log.setState(hosting("pay", "203.0.113.10"));
  ASSERT_TRUE(log.begin());
  k.queued = {{ctsync::Op::kUpsert, ctFlow("10.244.1.3", 2000, 40001)},
              {ctsync::Op::kUpsert, ctFlow("10.244.9.9", 3000, 40002, "198.51.100.1")}};
  now += 10;
  log.pump();
  k.overrun = true;
  now += 10;
  log.pump();
  k.queued = {{ctsync::Op::kDelete, ctFlow("10.244.1.3", 2000, 40001)}};
  now += 1000;
  log.pump();  // also flushes (a second passed)
  const std::string text = slurp(dir / flowlog::segmentName(now));
  EXPECT_NE(text.find("S\t1800000000000\tgw-1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("E\t1800000000000\t6\t203.0.113.10\t40000\t10.244.1.2"), std::string::npos);
  EXPECT_NE(text.find("N\t1800000000010\t6\t203.0.113.10\t40001\t10.244.1.3"), std::string::npos);
  EXPECT_EQ(text.find("198.51.100.1"), std::string::npos) << "not an address this node hosts";
  EXPECT_NE(text.find("L\t1800000000020\nR\t1800000000020\n"), std::string::npos) << text;
  EXPECT_EQ(log.stats().losses.load(), 1u);
  EXPECT_EQ(k.dumps, 2u) << "a resync at the start and after the loss";
  auto j = nlohmann::json::parse(
      *whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 40001, now - 1010));
  ASSERT_EQ(j["holders"].size(), 1u) << j.dump();
  EXPECT_EQ(j["holders"][0]["podIP"], "10.244.1.3");
  EXPECT_EQ(j["holders"][0]["namespace"], "pay");
  j = nlohmann::json::parse(
      *whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 40001, now));
  EXPECT_TRUE(j["holders"].empty()) << "ended";
  EXPECT_TRUE(j["complete"].get<bool>());
  // A torn or damaged line (a crash mid-write) is skipped and counted.
  {
    std::ofstream out(dir / flowlog::segmentName(now), std::ios::app);
    out << "N\t1800000001050\t6\t203.0.1";
  }
  j = nlohmann::json::parse(
      *whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 40000, now + 100));
  EXPECT_EQ(j["malformedLines"], 1);
  EXPECT_FALSE(j["complete"].get<bool>());
  ASSERT_EQ(j["holders"].size(), 1u);
  EXPECT_TRUE(j["holders"][0]["since"].is_null()) << "listed by a resync: start unknown";
  EXPECT_FALSE(whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 1, 0));
  fs::remove_all(dir);
}

TEST(FlowLogWriter, EachHourIsASegmentThatBeginsWithAResyncAndRetentionDeletesOldOnes) {
  const fs::path dir = fs::temp_directory_path() / "nsegress-flowlog-retention";
  fs::remove_all(dir);
  FakeConntrackEvents k;
  int64_t now = 1'800'000'000'000;
  k.existing = {ctFlow("10.244.1.2", 1000, 40000)};
  FlowLogOptions o;
  o.dir = dir.string();
  o.retention_s = 3 * 3600;
  FlowLog log(o, k, [&] { return now; });
  log.setState(hosting("pay", "203.0.113.10"));
  ASSERT_TRUE(log.begin());
  for (int h = 1; h <= 5; ++h) {
    now += 3'600'000;
    k.queued = {{ctsync::Op::kUpsert, ctFlow("10.244.1.3", uint16_t(2000 + h), 40001)}};
    log.pump();
    const std::string seg = slurp(dir / flowlog::segmentName(now));
    // The hour's first record, then a resync listing the long-lived flow.
    EXPECT_NE(seg.find("R\t" + std::to_string(now) + "\nE\t" + std::to_string(now)),
              std::string::npos)
        << seg;
  }
  size_t kept = 0;
  for (const auto& e : fs::directory_iterator(dir)) kept += e.path().extension() == ".log";
  EXPECT_EQ(kept, 4u) << "the last 3 hours and the current one";
  EXPECT_EQ(log.stats().segments_deleted.load(), 2u);
  // The long-lived flow is answered from the latest segment alone.
  auto j = nlohmann::json::parse(
      *whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 40000, now));
  ASSERT_EQ(j["holders"].size(), 1u) << j.dump();
  EXPECT_EQ(j["holders"][0]["podIP"], "10.244.1.2");
  fs::remove_all(dir);
}

TEST(FlowLogWriter, AFifoOrSymlinkAtASegmentsPathIsRefusedNotWaitedOn) {
  const fs::path dir = fs::temp_directory_path() / "nsegress-flowlog-fifo";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int64_t t = 1'800'000'000'000;
  ASSERT_EQ(::mkfifo((dir / flowlog::segmentName(t)).c_str(), 0600), 0);
  auto r = whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 1, t);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a regular file"), std::string::npos);
  fs::create_symlink("/etc/hostname", dir / flowlog::segmentName(t + 3'600'000));
  r = whoFromFlowLog(dir.string(), *IpAddress::parse("203.0.113.10"), 1, t + 3'600'000);
  ASSERT_FALSE(r);
  // The writer meets the FIFO too: counted as a write error, never blocked.
  FakeConntrackEvents k;
  FlowLogOptions o;
  o.dir = dir.string();
  int64_t now = t;
  FlowLog log(o, k, [&] { return now; });
  ASSERT_TRUE(log.begin());
  EXPECT_GE(log.stats().write_errors.load(), 1u);
  fs::remove_all(dir);
}

TEST(FlowLogWriter, AnUnusableDirectoryIsAClearError) {
  FakeConntrackEvents k;
  FlowLogOptions o;
  o.dir = "/proc/self/nsegress-flows";
  FlowLog log(o, k, [] { return int64_t{0}; });
  auto r = log.begin();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/proc/self/nsegress-flows"), std::string::npos);
}

}  // namespace
}  // namespace nsegress::gateway
