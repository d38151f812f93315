// The ownership protocol (common/ownership.h) under a randomized simulation:
// three gateways, the store, three addresses; crashes, power loss, agent
// pauses, store outages and restarts, partitions of every kind, message delay
// and loss, clock-rate drift. The kernel fence of every node (what really
// answers ARP and SNATs) is checked at every simulated millisecond:
//   property 1: never two nodes with one address live;
//   property 2: a store outage alone never interrupts an owner;
//   property 3: a crashed owner's addresses are live on its standby within a
//               bound.
// A failing schedule prints its seed: NSEGRESS_SIM_SEED=<seed> replays it
// with a trace.
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <random>
#include <variant>

#include "nsegress/common/ownership.h"
#include "nsegress/common/peer_wire.h"

using namespace nsegress;
using namespace nsegress::ownership;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

constexpr int64_t kInf = INT64_MAX;

struct Options {
  int nodes = 3;
  int64_t duration_ms = 6000;
  bool chaos = true;        // random faults of every kind
  double loss = 0;          // message loss
  int crash_owner_at = -1;  // power loss of node 0 at this time (ms), nothing else
  int store_down_at = -1;   // store outage [at, at + 3 s), nothing else
  int uplink_down_at = -1;  // node 0's uplink down at this time (ms), nothing else
  int handover_at = -1;     // planned handover of node 0's address to gw1, nothing else
};

class Sim {
 public:
  using Msg = std::variant<Heartbeat, HeartbeatAck, Announce, LeaseRequest, LeaseReply>;

  Sim(uint64_t seed, Options o) : rng_(seed), o_(o) {
    std::uniform_real_distribution<double> rate(1 - t_.drift / 2, 1 + t_.drift / 2);
    std::uniform_int_distribution<int64_t> offset(1'000'000, 900'000'000);
    for (int i = 0; i < o_.nodes; ++i) {
      nodes_.push_back(Node{"gw" + std::to_string(i), rate(rng_), offset(rng_)});
      ips_.push_back(ip(("203.0.113." + std::to_string(10 + i)).c_str()));
    }
    store_rate_ = rate(rng_);
    store_offset_ = offset(rng_);
    book_ = std::make_unique<LeaseBook>(t_, storeNow());
    designate();
    for (int i = 0; i < o_.nodes; ++i) startAgent(i);
  }

  // Runs the schedule; returns the first violation ("" none).
  std::string run() {
    planFaults();
    for (now_ = 0; now_ <= o_.duration_ms * 1000; now_ += 1000) {
      applyFaults();
      deliver();
      for (int i = 0; i < o_.nodes; ++i) tickNode(i);
      if (store_up_ && now_ % 200'000 == 0) designate(), pushRoles();
      if (auto v = check(); !v.empty()) return v;
    }
    return finalCheck();
  }

  bool trace = false;

 private:
  struct Node {
    std::string name;
    double rate;
    int64_t offset_us;
    std::unique_ptr<Member> m;
    bool powered = true, paused = false;
    std::map<IpAddress, int64_t> fence;  // real expiry (µs)
    int64_t next_tick = 0;
    std::deque<std::pair<int, Msg>> held;  // delivered while paused: (from, msg)
  };
  struct InFlight {
    int64_t at;
    int from, to;  // index; o_.nodes = the store
    Msg msg;
  };
  struct Fault {
    int64_t at;
    std::function<void()> fn;
  };

  Time localNow(int i) const {
    const auto& n = nodes_[i];
    return Time(microseconds(n.offset_us + static_cast<int64_t>(now_ * n.rate)));
  }
  Time storeNow() const {
    return Time(microseconds(store_offset_ + static_cast<int64_t>(now_ * store_rate_)));
  }
  int storeIdx() const { return o_.nodes; }
  int indexOf(const std::string& name) const {
    for (int i = 0; i < o_.nodes; ++i)
      if (nodes_[i].name == name) return i;
    return -1;
  }
  void log(const std::string& s) {
    if (trace) std::cout << now_ / 1000 << " ms: " << s << "\n";
  }

  // The controller: designated owner (from the book once it knows), standby
  // the next node in the ring.
  void designate() {
    for (int i = 0; i < o_.nodes; ++i) {
      const auto& recs = book_->records();
      auto it = recs.find(ips_[i]);
      const int owner = it == recs.end() ? i : indexOf(it->second.owner);
      book_->designate(ips_[i], nodes_[i].name, nodes_[(owner + 1) % o_.nodes].name);
    }
  }
  std::map<IpAddress, Member::Role> roles() const {
    std::map<IpAddress, Member::Role> out;
    for (int i = 0; i < o_.nodes; ++i) {
      const auto& r = book_->records().at(ips_[i]);
      out[ips_[i]] = Member::Role{r.owner, r.standby, r.epoch};
    }
    return out;
  }
  void pushRoles() {
    // The controller's files reach the agents after a while (not modelled
    // as messages: they carry no proof, only knowledge).
    for (auto& n : nodes_)
      if (n.m && n.powered && !n.paused) n.m->setRoles(roles());
  }
  void startAgent(int i) {
    auto& n = nodes_[i];
    n.m = std::make_unique<Member>(n.name, t_, localNow(i));
    if (store_up_) n.m->setRoles(roles());
    n.next_tick = now_;
    log(n.name + " agent starts");
  }

  void send(int from, int to, Msg m) {
    if (lost()) return;
    std::uniform_int_distribution<int64_t> d(200, 5000);
    int64_t delay = d(rng_);
    if (o_.chaos && std::uniform_real_distribution<double>(0, 1)(rng_) < 0.02)
      delay = std::uniform_int_distribution<int64_t>(50'000, 300'000)(rng_);
    flight_.push_back({now_ + delay, from, to, std::move(m)});
  }
  bool lost() { return std::uniform_real_distribution<double>(0, 1)(rng_) < o_.loss; }
  bool linked(int a, int b) const { return !cut_.count({std::min(a, b), std::max(a, b)}); }

  void deliver() {
    for (size_t k = 0; k < flight_.size();) {
      if (flight_[k].at > now_) {
        ++k;
        continue;
      }
      InFlight f = std::move(flight_[k]);
      flight_.erase(flight_.begin() + static_cast<long>(k));
      if (!linked(f.from, f.to)) continue;
      if (f.to == storeIdx()) {
        if (!store_up_) continue;
        auto& req = std::get<LeaseRequest>(f.msg);
        auto reply = book_->handle(req, storeNow());
        for (auto& [ip, rec] : book_->takeChanges()) {
          persisted_[ip] = {rec.owner, rec.epoch};
          log(ip.str() + (rec.handed ? " handed to " : " taken over by ") + rec.owner + " epoch " +
              std::to_string(rec.epoch));
        }
        send(storeIdx(), f.from, std::move(reply));
        for (auto& push : book_->takePushes()) send(storeIdx(), indexOf(push.node), push);
        continue;
      }
      auto& n = nodes_[f.to];
      if (!n.powered || !n.m) continue;
      if (n.paused) {
        n.held.emplace_back(f.from, std::move(f.msg));
        continue;
      }
      handle(f.to, f.from, f.msg);
    }
  }

  void handle(int i, int from, const Msg& msg) {
    auto& n = nodes_[i];
    const Time t = localNow(i);
    if (auto* hb = std::get_if<Heartbeat>(&msg)) {
      if (auto ack = n.m->onHeartbeat(*hb, t)) send(i, from, *ack);
    } else if (auto* a = std::get_if<HeartbeatAck>(&msg)) {
      n.m->onAck(*a, t);
    } else if (auto* an = std::get_if<Announce>(&msg)) {
      n.m->onAnnounce(*an);
    } else if (auto* r = std::get_if<LeaseReply>(&msg)) {
      if (trace)
        for (auto& l : r->leases)
          if (l.ip == ips_[0])
            log(n.name + " reply for request of " +
                std::to_string((timeOf(r->echo) - localNow(i)).count() / 1000000) + " ms: owner " +
                l.owner + " granted " + std::to_string(l.granted) + " epoch " +
                std::to_string(l.epoch));
      n.m->onReply(*r, t);
    }
  }

  void tickNode(int i) {
    auto& n = nodes_[i];
    if (!n.powered || !n.m || n.paused || now_ < n.next_tick) return;
    n.next_tick = now_ + std::uniform_int_distribution<int64_t>(8000, 12000)(rng_);
    const Time t = localNow(i);
    // As the agent does: the fence first (a release is reported only once
    // the kernel has closed it), then the protocol's tick, then the fence
    // again (the tick may have shortened a proof).
    applyFence(i, t);
    std::set<IpAddress> closed;
    for (const auto& ip : ips_)
      if (!n.fence.count(ip)) closed.insert(ip);
    n.m->setFenced(closed);
    auto out = n.m->tick(t);
    if (out.request) send(i, storeIdx(), *out.request);
    for (auto& [to, hb] : out.heartbeats) send(i, indexOf(to), hb);
    for (auto& an : out.announces)
      for (int j = 0; j < o_.nodes; ++j)
        if (j != i) send(i, j, an);
    applyFence(i, t);
  }

  // The fence, as the agent programs it: element timeouts, applied by the
  // kernel a little later; elements not live are deleted at once.
  void applyFence(int i, Time t) {
    auto& n = nodes_[i];
    const int64_t kernel_delay = std::uniform_int_distribution<int64_t>(0, 2000)(rng_);
    const auto live = n.m->live(t);
    for (auto it = n.fence.begin(); it != n.fence.end();)
      it = live.count(it->first) ? std::next(it) : n.fence.erase(it);
    for (const auto& [ip, until] : live) {
      if (trace && ip == ips_[0] && !n.fence.count(ip))
        log(n.name + " live for " + ip.str() +
            (until == kForever
                 ? std::string(" forever")
                 : " for " +
                       std::to_string(std::chrono::duration_cast<milliseconds>(until - t).count()) +
                       " ms"));
      if (until == kForever) {
        n.fence[ip] = kInf;
        continue;
      }
      const auto left = std::chrono::duration_cast<microseconds>(until - t).count();
      n.fence[ip] = now_ + kernel_delay + static_cast<int64_t>(left / n.rate);
    }
  }

  std::string check() {
    for (int k = 0; k < o_.nodes; ++k) {
      int live = 0;
      std::string who;
      for (auto& n : nodes_) {
        auto it = n.fence.find(ips_[k]);
        if (n.powered && it != n.fence.end() && it->second > now_) live++, who += n.name + " ";
      }
      if (live > 1)
        return "two owners of " + ips_[k].str() + " at " + std::to_string(now_ / 1000) +
               " ms: " + who;
      // Property 2: only the store is out — every address stays live.
      if (o_.store_down_at >= 0 && now_ > 1'000'000 && live != 1)
        return ips_[k].str() + " not live at " + std::to_string(now_ / 1000) +
               " ms during a store outage";
    }
    return "";
  }

  std::string finalCheck() {
    // Property 3: node 0 lost (power, or uplink): its address is live on its
    // standby (gw1) within the bound.
    if (o_.handover_at >= 0) {
      // Planned: handed over, with a gap of the protocol's own latency only.
      if (!first_live_after_.count(0)) return "address of gw0 never handed over to gw1";
      if (!closed_at_) return "gw0 never closed its fence";
      const int64_t gap = first_live_after_[0] - closed_at_;
      gaps.push_back(gap / 1000);
      if (gap > 100'000) return "handover took " + std::to_string(gap / 1000) + " ms";
      return "";
    }
    const int64_t failed_at = o_.crash_owner_at >= 0 ? o_.crash_owner_at : o_.uplink_down_at;
    if (failed_at < 0) return "";
    const int64_t bound_us = 900'000;
    if (!first_live_after_.count(0)) return "address of gw0 never live again after its failure";
    const int64_t gap = first_live_after_[0] - failed_at * 1000;
    gaps.push_back(gap / 1000);
    if (gap > bound_us) return "takeover took " + std::to_string(gap / 1000) + " ms";
    return "";
  }

  void planFaults() {
    auto at = [&](int64_t ms, std::function<void()> fn) { faults_.push_back({ms * 1000, fn}); };
    if (o_.crash_owner_at >= 0) {
      at(o_.crash_owner_at, [this] { powerOff(0); });
      watch0_ = true;
      return;
    }
    if (o_.uplink_down_at >= 0) {
      at(o_.uplink_down_at, [this] {
        nodes_[0].m->setHealthy(false);
        log("gw0 uplink down");
      });
      watch0_ = true;
      return;
    }
    if (o_.handover_at >= 0) {
      at(o_.handover_at, [this] {
        book_->handover(ips_[0], "gw1");
        log("handover of " + ips_[0].str() + " to gw1 requested");
      });
      watch0_ = true;
      return;
    }
    if (o_.store_down_at >= 0) {
      at(o_.store_down_at, [this] { storeDown(); });
      at(o_.store_down_at + 3000, [this] { storeUp(); });
      return;
    }
    if (!o_.chaos) return;
    std::uniform_int_distribution<int64_t> when(300, o_.duration_ms - 500);
    std::uniform_int_distribution<int> node(0, o_.nodes - 1);
    std::uniform_int_distribution<int64_t> span(50, 2500);
    std::uniform_int_distribution<int> kind(0, 7);
    const int faults = std::uniform_int_distribution<int>(1, 6)(rng_);
    for (int f = 0; f < faults; ++f) {
      const int64_t t0 = when(rng_), len = span(rng_);
      const int i = node(rng_);
      switch (kind(rng_)) {
        case 0:  // kill -9 of the agent (kernel fence stays), restarted later
          at(t0, [this, i] {
            nodes_[i].m.reset();
            log(nodes_[i].name + " agent killed");
          });
          at(t0 + len, [this, i] {
            if (nodes_[i].powered && !nodes_[i].m) startAgent(i);
          });
          break;
        case 1:  // power loss (fence gone), back later
          at(t0, [this, i] { powerOff(i); });
          at(t0 + len, [this, i] {
            nodes_[i].powered = true;
            startAgent(i);
          });
          break;
        case 2:  // the agent frozen (SIGSTOP); the kernel fence runs on
          at(t0, [this, i] { nodes_[i].paused = true; });
          at(t0 + len, [this, i] { resume(i); });
          break;
        case 3:  // store outage, then a restart from what it persisted
          at(t0, [this] { storeDown(); });
          at(t0 + len, [this] { storeUp(); });
          break;
        case 4:  // node cut from the store only
          at(t0, [this, i] { cut_.insert({i, storeIdx()}); });
          at(t0 + len, [this, i] { cut_.erase({i, storeIdx()}); });
          break;
        case 5: {  // node cut from its peers only
          at(t0, [this, i] {
            for (int j = 0; j < o_.nodes; ++j)
              if (j != i) cut_.insert({std::min(i, j), std::max(i, j)});
          });
          at(t0 + len, [this, i] {
            for (int j = 0; j < o_.nodes; ++j)
              if (j != i) cut_.erase({std::min(i, j), std::max(i, j)});
          });
          break;
        }
        case 6:  // node cut from everything, or its uplink down
          if (std::uniform_int_distribution<int>(0, 1)(rng_)) {
            at(t0, [this, i] {
              for (int j = 0; j <= o_.nodes; ++j)
                if (j != i) cut_.insert({std::min(i, j), std::max(i, j)});
            });
            at(t0 + len, [this, i] {
              for (int j = 0; j <= o_.nodes; ++j)
                if (j != i) cut_.erase({std::min(i, j), std::max(i, j)});
            });
          } else {
            at(t0, [this, i] {
              if (nodes_[i].m) nodes_[i].m->setHealthy(false);
            });
            at(t0 + len, [this, i] {
              if (nodes_[i].m) nodes_[i].m->setHealthy(true);
            });
          }
          break;
        case 7: {  // a planned handover (a drain) of an address to any other node
          const int to =
              (i + 1 + std::uniform_int_distribution<int>(0, o_.nodes - 2)(rng_)) % o_.nodes;
          const int k = node(rng_);
          at(t0, [this, k, to] {
            if (!store_up_) return;
            book_->handover(ips_[k], nodes_[to].name);
            log("handover of " + ips_[k].str() + " to " + nodes_[to].name + " requested");
          });
          break;
        }
      }
    }
    o_.loss = std::uniform_real_distribution<double>(0, 0.2)(rng_);
  }

  void applyFaults() {
    for (auto& f : faults_)
      if (f.at == now_) {
        f.fn();
        if (trace) {
          std::cout << now_ / 1000 << " ms: fault; cut:";
          for (auto& [a, b] : cut_) std::cout << " " << a << "-" << b;
          for (auto& n : nodes_)
            std::cout << " " << n.name << (n.m ? "" : "(dead)") << (n.paused ? "(paused)" : "")
                      << (n.powered ? "" : "(off)")
                      << (n.m && !n.m->healthy() ? "(unhealthy)" : "");
          std::cout << "\n";
        }
      }
    if (watch0_ && o_.handover_at >= 0 && !closed_at_ && now_ > o_.handover_at * 1000) {
      auto& f = nodes_[0].fence;
      auto it = f.find(ips_[0]);
      if (it == f.end() || it->second <= now_) closed_at_ = now_;
    }
    if (watch0_ && !first_live_after_.count(0)) {
      const int64_t failed = o_.crash_owner_at >= 0   ? o_.crash_owner_at
                             : o_.uplink_down_at >= 0 ? o_.uplink_down_at
                                                      : o_.handover_at;
      if (now_ > failed * 1000) {
        auto& f = nodes_[1].fence;
        auto it = f.find(ips_[0]);
        if (it != f.end() && it->second > now_) first_live_after_[0] = now_;
      }
    }
  }

  void powerOff(int i) {
    auto& n = nodes_[i];
    n.powered = false;
    n.m.reset();
    n.fence.clear();
    n.held.clear();
    n.paused = false;
    log(n.name + " powered off");
  }
  void resume(int i) {
    auto& n = nodes_[i];
    n.paused = false;
    if (!n.m) return;
    while (!n.held.empty()) {
      auto [from, msg] = std::move(n.held.front());
      n.held.pop_front();
      handle(i, from, msg);
    }
  }
  void storeDown() {
    store_up_ = false;
    log("store down");
  }
  void storeUp() {
    if (store_up_) return;
    store_up_ = true;
    book_ = std::make_unique<LeaseBook>(t_, storeNow());
    for (const auto& [ip, oe] : persisted_) book_->restore(ip, oe.first, oe.second);
    designate();
    log("store restarted");
  }

  std::mt19937_64 rng_;
  Options o_;
  Timing t_;
  std::vector<Node> nodes_;
  std::vector<IpAddress> ips_;
  double store_rate_;
  int64_t store_offset_;
  std::unique_ptr<LeaseBook> book_;
  bool store_up_ = true;
  std::map<IpAddress, std::pair<std::string, uint64_t>> persisted_;
  std::vector<InFlight> flight_;
  std::set<std::pair<int, int>> cut_;
  std::vector<Fault> faults_;
  int64_t now_ = 0;
  std::map<int, int64_t> first_live_after_;
  int64_t closed_at_ = 0;  // handover: when gw0's fence closed
  bool watch0_ = false;

 public:
  std::vector<int64_t> gaps;
};

int schedules(int dflt) {
  if (const char* s = std::getenv("NSEGRESS_SIM_SCHEDULES")) return std::atoi(s);
  return dflt;
}

void runMany(const char* what, int n, Options o, uint64_t base) {
  if (const char* s = std::getenv("NSEGRESS_SIM_SEED")) {
    Sim sim(std::strtoull(s, nullptr, 10), o);
    sim.trace = true;
    std::cout << "replay: " << sim.run() << "\n";
    return;
  }
  std::vector<int64_t> gaps;
  for (int k = 0; k < n; ++k) {
    const uint64_t seed = base + static_cast<uint64_t>(k);
    Sim sim(seed, o);
    const auto v = sim.run();
    ASSERT_EQ(v, "") << what << ": schedule " << seed << " (NSEGRESS_SIM_SEED=" << seed
                     << " replays it)";
    gaps.insert(gaps.end(), sim.gaps.begin(), sim.gaps.end());
  }
  if (!gaps.empty()) {
    std::sort(gaps.begin(), gaps.end());
    std::cout << what << ": takeover gap median " << gaps[gaps.size() / 2] << " ms, max "
              << gaps.back() << " ms over " << gaps.size() << " schedules\n";
  }
}

}  // namespace

TEST(OwnershipSimulation, NeverTwoOwnersUnderCrashesPartitionsLossDelayAndDrift) {
  runMany("chaos", schedules(2000), Options{}, 1);
}

TEST(OwnershipSimulation, AStoreOutageAloneNeverInterruptsOrMovesAnAddress) {
  Options o;
  o.chaos = false;
  o.store_down_at = 1500;
  runMany("store outage", schedules(200), o, 100000);
}

TEST(OwnershipSimulation, ALostOwnersAddressIsLiveOnItsStandbyWithinTheBound) {
  Options o;
  o.chaos = false;
  o.duration_ms = 4000;
  o.crash_owner_at = 2000;
  runMany("power loss", schedules(200), o, 200000);
}

TEST(OwnershipSimulation, AnOwnerWhoseUplinkIsDownHandsOverWithinTheBound) {
  Options o;
  o.chaos = false;
  o.duration_ms = 4000;
  o.uplink_down_at = 2000;
  runMany("uplink down", schedules(200), o, 300000);
}

TEST(OwnershipSimulation, APlannedHandoverClosesTheOwnerFirstAndOpensTheTargetAtOnce) {
  Options o;
  o.chaos = false;
  o.duration_ms = 3000;
  o.handover_at = 1500;
  runMany("handover", schedules(200), o, 400000);
}

// Unit cases of the rules the simulation relies on.
TEST(LeaseBook, OnlyTheAcknowledgedStandbyTakesOverAndOnlyAfterTheLease) {
  Timing t;
  Time now{std::chrono::seconds(100)};
  LeaseBook book(t, now);
  const auto a = ip("203.0.113.10");
  book.designate(a, "gw0", "gw1");
  now += std::chrono::seconds(5);  // past the quiet period
  auto r = book.handle({"gw0", 1, {{a, "gw1"}}, {}}, now);
  ASSERT_EQ(r.leases.size(), 1u);
  EXPECT_TRUE(r.leases[0].granted);
  EXPECT_EQ(r.leases[0].standby, "gw1");
  // Before the lease ends: refused. By a node that is not the standby: refused.
  EXPECT_FALSE(book.handle({"gw1", 1, {}, {a}}, now + milliseconds(100)).leases[0].granted);
  EXPECT_FALSE(book.handle({"gw2", 1, {}, {a}}, now + milliseconds(600)).leases[0].granted);
  // A stale request (an older seq) is ignored altogether.
  EXPECT_TRUE(book.handle({"gw1", 1, {}, {a}}, now + milliseconds(600)).leases.empty());
  auto g = book.handle({"gw1", 2, {}, {a}}, now + milliseconds(600));
  ASSERT_TRUE(g.leases[0].granted);
  EXPECT_EQ(g.leases[0].owner, "gw1");
  EXPECT_EQ(g.leases[0].epoch, 2u);
  EXPECT_EQ(g.leases[0].standby, "gw0");  // sticky: the old owner stands by
  auto changes = book.takeChanges();
  ASSERT_EQ(changes.size(), 1u);
  // The old owner's renewal is refused and names the new owner.
  auto old = book.handle({"gw0", 2, {{a, "gw1"}}, {}}, now + milliseconds(700));
  EXPECT_FALSE(old.leases[0].granted);
  EXPECT_EQ(old.leases[0].owner, "gw1");
}

TEST(LeaseBook, ARestartedStoreTakesNothingOverDuringItsQuietPeriod) {
  Timing t;
  Time now{std::chrono::seconds(100)};
  LeaseBook book(t, now);
  const auto a = ip("203.0.113.10");
  book.restore(a, "gw0", 3);
  book.designate(a, "", "gw1");
  // Even with gw1 acknowledged, nothing moves before the quiet period ends.
  book.handle({"gw0", 1, {{a, "gw1"}}, {}}, now);
  EXPECT_FALSE(
      book.handle({"gw1", 1, {}, {a}}, now + t.quiet() - milliseconds(1)).leases[0].granted);
  EXPECT_TRUE(book.handle({"gw1", 2, {}, {a}}, now + t.quiet() + t.lease).leases[0].granted);
}

TEST(Member, AnOwnerIsLiveOnlyWithAProofAndForeverOnlyWithoutAStandby) {
  Timing t;
  Time now{std::chrono::seconds(10)};
  Member m("gw0", t, now);
  const auto a = ip("203.0.113.10");
  m.setRoles({{a, {"gw0", "", 1}}});
  EXPECT_TRUE(m.live(now).empty());  // nothing before the store says so
  auto out = m.tick(now);
  ASSERT_TRUE(out.request);
  m.onReply({"gw0", out.request->seq, {{a, "gw0", 1, "", true}}}, now + milliseconds(2));
  EXPECT_EQ(m.live(now).at(a), kForever);  // no standby: nobody can take it
  // A standby is designated: from the request that names it, the store lease
  // is the only proof until the standby's promise counts.
  m.setRoles({{a, {"gw0", "gw1", 1}}});
  now += t.renew;
  out = m.tick(now);
  ASSERT_TRUE(out.request);
  EXPECT_EQ(out.request->renew[0].standby, "gw1");
  EXPECT_NE(m.live(now).at(a), kForever);
  m.onReply({"gw0", out.request->seq, {{a, "gw0", 1, "gw1", true}}}, now + milliseconds(2));
  const Time lease_end = m.live(now).at(a);
  EXPECT_EQ(lease_end, t.proofUntil(now, t.lease));
  // The standby's promise extends it.
  now += t.heartbeat;
  out = m.tick(now);
  ASSERT_EQ(out.heartbeats.size(), 1u);
  m.onAck({"gw1", out.heartbeats[0].second.seq, {a}}, now + milliseconds(1));
  EXPECT_EQ(m.live(now).at(a), t.proofUntil(now, t.promise));
  // An ack from a node that is not the counted standby proves nothing.
  m.onAck({"gw2", ownership::seqOf(now + milliseconds(40)), {a}}, now);
  EXPECT_EQ(m.live(now).at(a), t.proofUntil(now, t.promise));
  // Proofs end: not live.
  EXPECT_TRUE(m.live(now + t.lease + t.promise).empty());
}

TEST(PeerWire, MessagesRoundTripAndForgedOrMalformedDatagramsAreRefused) {
  const std::string key = "0123456789abcdef-key";
  const ownership::Message req =
      LeaseRequest{"gw1", 7, {{ip("203.0.113.10"), "gw2"}}, {ip("fd00:e::10")}};
  auto d = ownership::encode(req, key);
  auto back = ownership::decode(d, key);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, req);
  // Another key, a flipped byte, truncation, garbage: refused with a reason.
  EXPECT_FALSE(ownership::decode(d, "another-key-0123456789"));
  auto flipped = d;
  flipped.back() ^= 1;
  EXPECT_FALSE(ownership::decode(flipped, key));
  EXPECT_FALSE(ownership::decode(d.substr(0, 20), key));
  EXPECT_FALSE(ownership::decode(std::string(70000, 'x'), key));
  // Signed but malformed: a bad node name, a bad address, too many addresses.
  std::vector<IpAddress> many(ownership::kMaxAddressesPerMessage + 1, ip("203.0.113.10"));
  auto big = ownership::encode(Heartbeat{"gw1", 1, many}, key);
  auto r = ownership::decode(big, key);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("too many"), std::string::npos);
  auto bad_name = ownership::encode(Heartbeat{"Not_A_Node", 1, {}}, key);
  EXPECT_FALSE(ownership::decode(bad_name, key));
}
