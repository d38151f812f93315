// The ownership protocol: which node may answer ARP/ND for an egress address
// and SNAT to it. Pure: times are passed in, messages are values; the agent
// (gateway/src/failover.cc) carries them over UDP and HTTP, the controller
// keeps the LeaseBook. docs/architecture.md "Failover" gives the argument why
// two nodes never own one address at once; tests/unit/ownership_test.cc
// checks it over thousands of random schedules.
//
// In short:
// - The store (the controller; in a cluster the API server) grants leases.
//   An address has one owner and at most one acknowledged standby: the one
//   the owner itself declared in its last renewal. Only that standby may take
//   the address over, and only after the owner's lease has expired.
// - The standby promises the owner, on each heartbeat, not to ask for a
//   takeover before its own receipt time + `promise`.
// - The owner may use the address while it holds a proof: a store lease or
//   a promise of its acknowledged standby, each counted from the owner's own
//   send time and shortened by the clock-rate bound and a margin. The kernel
//   fence (an nft set element with that timeout) enforces the proof's end
//   even if the agent dies or hangs.
// - An owner that declared no standby cannot be replaced by anyone: it needs
//   no expiry (a pool with one gateway survives a store outage).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "nsegress/common/ip.h"

namespace nsegress::ownership {

using Time = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;
using std::chrono::milliseconds;

inline constexpr Time kForever = Time::max();

struct Timing {
  Duration lease = milliseconds(500);    // a store lease
  Duration promise = milliseconds(500);  // a standby's promise (and its failure detection)
  Duration renew = milliseconds(100);    // renewal period
  Duration heartbeat = milliseconds(50);
  Duration margin = milliseconds(20);  // kernel and scheduling slack taken off every proof
  double drift = 0.01;                 // bound on the clock-rate difference of two nodes

  // A span `d` measured by another clock from an event at or after `sent`
  // (our clock) ends, on our clock, no earlier than this.
  Time proofUntil(Time sent, Duration d) const;
  // Nothing a node promised before a restart can still bind it after this.
  Duration quiet() const;
};

// Message sequence numbers are the sender's monotonic time in nanoseconds.
uint64_t seqOf(Time t);
Time timeOf(uint64_t seq);

// Owner → its standby, every `heartbeat`.
struct Heartbeat {
  std::string from;
  uint64_t seq = 0;
  std::vector<IpAddress> owned;  // the addresses whose standby the receiver is
  bool operator==(const Heartbeat&) const = default;
};
// Standby → owner: "I will not ask for these before my receipt time + promise".
struct HeartbeatAck {
  std::string from;
  uint64_t echo = 0;  // the heartbeat's seq
  std::vector<IpAddress> promised;
  bool operator==(const HeartbeatAck&) const = default;
};
// New owner → every node: steer to me (ordered by epoch).
struct Announce {
  std::string from;
  IpAddress ip;
  uint64_t epoch = 0;
  bool operator==(const Announce&) const = default;
};

struct LeaseRequest {
  struct Renew {
    IpAddress ip;
    std::string standby;  // the standby whose promises the owner counts ("" none)
    bool operator==(const Renew&) const = default;
  };
  std::string node;
  uint64_t seq = 0;
  std::vector<Renew> renew;
  std::vector<IpAddress> takeover;
  // Planned handover: addresses the owner has stopped using (its fence is
  // closed) so the store may give them to their handover target.
  std::vector<IpAddress> released;
  bool operator==(const LeaseRequest&) const = default;
};
struct LeaseState {
  IpAddress ip;
  std::string owner;  // "" unknown to the store
  uint64_t epoch = 0;
  std::string standby;  // designated by the controller for this owner
  bool granted = false;
  std::string handover;  // planned: the owner is asked to hand over to this node
  bool operator==(const LeaseState&) const = default;
};
struct LeaseReply {
  std::string node;
  uint64_t echo = 0;
  std::vector<LeaseState> leases;
  bool operator==(const LeaseReply&) const = default;
};

// The store's side. Serial: one request at a time.
class LeaseBook {
 public:
  struct Record {
    std::string owner;
    uint64_t epoch = 0;
    Time expires{};
    std::string acked;     // the standby the owner declared last ("" none)
    std::string standby;   // designated by the controller
    std::string handover;  // planned move requested to this node
    bool handed = false;   // the last change of owner was a handover
    bool operator==(const Record&) const = default;
  };
  // Leases granted before a restart may still hold: nothing is taken over
  // before now + quiet().
  LeaseBook(Timing t, Time now);

  // The controller's placement. `owner` only names the owner of an address
  // the book does not know yet (the book decides who owns a known one).
  void designate(const IpAddress& ip, const std::string& owner, const std::string& standby);
  // A persisted record (owner, epoch) read back after a restart.
  void restore(const IpAddress& ip, const std::string& owner, uint64_t epoch);

  LeaseReply handle(const LeaseRequest& r, Time now);
  // Planned move (a drain): the owner is asked, at its next renewal, to stop
  // using `ip` and release it; the store then gives it to `to` (epoch + 1),
  // which takes it at once. Never two owners: `to` is granted only after the
  // owner said its fence is closed. "" cancels a handover not yet released.
  void handover(const IpAddress& ip, const std::string& to);
  // Replies to send unasked (the target of a released handover: "ask now").
  std::vector<LeaseReply> takePushes() { return std::exchange(pushes_, {}); }

  const std::map<IpAddress, Record>& records() const { return recs_; }
  // Owner changes (takeovers) since the last call: persist them, then tell.
  std::vector<std::pair<IpAddress, Record>> takeChanges();

 private:
  Timing t_;
  Time quiet_until_;
  std::map<IpAddress, Record> recs_;
  std::map<std::string, uint64_t> last_seq_;
  std::vector<std::pair<IpAddress, Record>> changes_;
  std::vector<LeaseReply> pushes_;
};

// A gateway's side.
class Member {
 public:
  struct Role {
    std::string owner;    // as the controller placed it
    std::string standby;  // designated standby
    uint64_t epoch = 0;
    bool operator==(const Role&) const = default;
  };
  struct Out {
    std::optional<LeaseRequest> request;
    std::vector<std::pair<std::string, Heartbeat>> heartbeats;  // (to, message)
    std::vector<Announce> announces;                            // to every node
    std::vector<IpAddress> takeovers;  // taken over since the last tick (GARP, count, log)
  };
  struct Owner {
    std::string node;
    uint64_t epoch = 0;
  };

  Member(std::string self, Timing t, Time start);

  // The controller's view of every address this node hosts, stands by for,
  // or steers to. Addresses missing from it are dropped at once.
  void setRoles(std::map<IpAddress, Role> roles);
  std::optional<HeartbeatAck> onHeartbeat(const Heartbeat& hb, Time now);
  void onAck(const HeartbeatAck& a, Time now);
  void onReply(const LeaseReply& r, Time now);
  void onAnnounce(const Announce& a);
  // An unhealthy node (its uplink down) uses nothing, claims nothing and
  // takes nothing over: its standby takes its addresses after `promise`.
  void setHealthy(bool healthy) { healthy_ = healthy; }
  bool healthy() const { return healthy_; }
  Out tick(Time now);

  // The fence: addresses this node may use now, and until when (this
  // node's clock; kForever for an owner without a standby).
  std::map<IpAddress, Time> live(Time now) const;
  // The owner of each address as far as this node knows (highest epoch).
  std::map<IpAddress, Owner> owners() const;
  const std::string& self() const { return self_; }
  // As standby: when the owner of `ip` was last heard from (a heartbeat).
  std::optional<Time> lastHeard(const IpAddress& ip) const;
  // Planned handover: the addresses whose fence the kernel has closed (the
  // caller's last successful fence update did not list them as live). A
  // release is reported to the store only for these.
  void setFenced(const std::set<IpAddress>& closed);
  // Takeovers since the last call (tick() also returns them).
  std::vector<IpAddress> takeTakeovers() { return std::exchange(takeovers_, {}); }
  // Addresses handed over by this node (planned) since the last call.
  std::vector<IpAddress> takeHandovers() { return std::exchange(handed_over_, {}); }

 private:
  struct Addr {
    Role role;
    Owner owner;                  // best knowledge
    std::string declared;         // standby named in our last renewal
    uint64_t declared_since = 0;  // seq of the first request naming it
    int announce_left = 0;        // announcements still to send
    Time last_announce{};
    std::string counted;                      // standby whose promises count ("" none)
    bool confirmed = false;                   // `declared` acknowledged by the store
    Time store_until{};                       // proof: store lease
    Time promise_until{};                     // proof: the counted standby's promise
    Time promised_until{};                    // as standby: no takeover request before this
    Time last_takeover_ask{};                 // as standby
    Time last_heartbeat{};                    // as standby: the owner's last heartbeat
    uint64_t ask_seq = 0;                     // a takeover request the store may still act on
    bool releasing = false;                   // handing over: released until the store moves it
    bool fence_closed = false;                // ... and the kernel no longer uses it
    bool handed = false;                      // handed to us: ask for it now
    Time last_release{};                      // last report of a release to the store
    std::map<uint64_t, std::string> pending;  // request seq → standby it declared
  };
  bool owns(const Addr& a) const { return a.owner.node == self_; }
  void lose(Addr& a);
  bool mayAsk(const Addr& a, Time now) const;

  std::string self_;
  Timing t_;
  Time start_;
  Time last_renew_{};
  Time last_heartbeat_{};
  bool healthy_ = true;
  std::map<IpAddress, Addr> addrs_;
  std::vector<IpAddress> takeovers_;
  std::vector<IpAddress> handed_over_;
  static constexpr int kAnnouncements = 3;  // one per heartbeat period
};

}  // namespace nsegress::ownership
