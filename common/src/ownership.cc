#include "nsegress/common/ownership.h"

#include <algorithm>
#include <utility>

namespace nsegress::ownership {

Time Timing::proofUntil(Time sent, Duration d) const {
  // The other clock may run faster than ours by `drift`: its `d` may be
  // over after d / (1 + drift) of our time.
  const auto ours = std::chrono::duration_cast<Duration>(d * (1.0 - 2.0 * drift));
  return sent + ours - margin;
}

Duration Timing::quiet() const {
  return std::chrono::duration_cast<Duration>(std::max(lease, promise) * (1.0 + 2.0 * drift)) +
         margin;
}

uint64_t seqOf(Time t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

Time timeOf(uint64_t seq) {
  return Time(std::chrono::duration_cast<Duration>(
      std::chrono::nanoseconds(static_cast<int64_t>(seq & 0x7fffffffffffffffULL))));
}

// ---------------------------------------------------------------- store

LeaseBook::LeaseBook(Timing t, Time now) : t_(t), quiet_until_(now + t.quiet()) {}

void LeaseBook::designate(const IpAddress& ip, const std::string& owner,
                          const std::string& standby) {
  auto it = recs_.find(ip);
  if (it == recs_.end()) {
    if (owner.empty()) return;
    // Known from now on; the owner's first renewal starts its lease.
    it = recs_.emplace(ip, Record{owner, 1, Time{}, "", ""}).first;
  }
  it->second.standby = standby == it->second.owner ? "" : standby;
}

void LeaseBook::handover(const IpAddress& ip, const std::string& to) {
  auto it = recs_.find(ip);
  if (it == recs_.end()) return;
  it->second.handover = to == it->second.owner ? "" : to;
}

void LeaseBook::restore(const IpAddress& ip, const std::string& owner, uint64_t epoch) {
  recs_[ip] = Record{owner, epoch, quiet_until_, "", ""};
}

LeaseReply LeaseBook::handle(const LeaseRequest& r, Time now) {
  LeaseReply out{r.node, r.seq, {}};
  auto& last = last_seq_[r.node];
  if (r.seq <= last) return out;  // older than one already answered: ignored
  last = r.seq;
  auto state = [&](const IpAddress& ip, const Record* rec, bool granted) {
    return rec ? LeaseState{ip,           rec->owner, rec->epoch,
                            rec->standby, granted,    rec->owner == r.node ? rec->handover : ""}
               : LeaseState{ip, "", 0, "", false, ""};
  };
  std::set<IpAddress> listed;
  for (const auto& ip : r.released) {
    listed.insert(ip);
    auto it = recs_.find(ip);
    if (it == recs_.end()) continue;
    auto& rec = it->second;
    if (rec.owner == r.node && !rec.handover.empty()) {
      // The owner's fence is closed: the target may take it now.
      const std::string old = rec.owner;
      rec.owner = rec.handover;
      rec.epoch++;
      rec.expires = now + t_.lease;
      rec.acked.clear();
      if (rec.standby == rec.owner) rec.standby.clear();
      rec.handover.clear();
      rec.handed = true;
      changes_.emplace_back(ip, rec);
      pushes_.push_back(LeaseReply{rec.owner, 0, {state(ip, &rec, false)}});
    }
    out.leases.push_back(state(ip, &rec, false));
  }
  for (const auto& w : r.renew) {
    auto it = recs_.find(w.ip);
    if (it == recs_.end() || it->second.owner != r.node) {
      out.leases.push_back(state(w.ip, it == recs_.end() ? nullptr : &it->second, false));
      continue;
    }
    auto& rec = it->second;
    rec.expires = std::max(rec.expires, now + t_.lease);
    rec.acked = w.standby == r.node ? "" : w.standby;
    out.leases.push_back(state(w.ip, &rec, true));
    listed.insert(w.ip);
  }
  for (const auto& ip : r.takeover) {
    auto it = recs_.find(ip);
    if (it == recs_.end()) {
      out.leases.push_back(state(ip, nullptr, false));
      continue;
    }
    auto& rec = it->second;
    if (rec.owner == r.node) {  // a repeated request whose grant was lost
      rec.expires = std::max(rec.expires, now + t_.lease);
      rec.acked.clear();
      out.leases.push_back(state(ip, &rec, true));
      continue;
    }
    const bool may = rec.acked == r.node && now >= rec.expires && now >= quiet_until_;
    if (may) {
      const std::string old = rec.owner;
      rec.owner = r.node;
      rec.epoch++;
      rec.expires = now + t_.lease;
      rec.acked.clear();
      rec.standby = old;  // sticky: the old owner stands by when it is back
      rec.handover.clear();
      rec.handed = false;
      changes_.emplace_back(ip, rec);
    }
    out.leases.push_back(state(ip, &rec, may));
    listed.insert(ip);
  }
  // An address handed to the requester that it did not ask for yet (its
  // push was lost): it learns it owns it now and asks.
  for (const auto& [ip, rec] : recs_)
    if (rec.handed && rec.owner == r.node && !listed.count(ip))
      out.leases.push_back(state(ip, &rec, false));
  return out;
}

std::vector<std::pair<IpAddress, LeaseBook::Record>> LeaseBook::takeChanges() {
  return std::exchange(changes_, {});
}

// ---------------------------------------------------------------- member

Member::Member(std::string self, Timing t, Time start)
    : self_(std::move(self)), t_(t), start_(start) {}

void Member::lose(Addr& a) {
  a.store_until = a.promise_until = Time{};
  a.counted.clear();
  a.declared.clear();
  a.confirmed = false;
  a.pending.clear();
}

void Member::setRoles(std::map<IpAddress, Role> roles) {
  for (auto it = addrs_.begin(); it != addrs_.end();)
    it = roles.count(it->first) ? std::next(it) : addrs_.erase(it);
  for (auto& [ip, role] : roles) {
    auto [it, fresh] = addrs_.try_emplace(ip);
    auto& a = it->second;
    if (!fresh && role.owner == self_ && !owns(a) && role.epoch > a.owner.epoch) {
      // Handed to us (or taken over by us and we missed the grant): it is
      // ours only through a grant of the store, asked for now — so the
      // takeover's steps (flows, fence, announcements) happen here too.
      a.handed = true;
    } else if (fresh || role.epoch > a.owner.epoch) {
      if (owns(a) && role.owner != self_) lose(a);
      a.owner = Owner{role.owner, role.epoch};
    }
    a.role = std::move(role);
  }
}

std::optional<HeartbeatAck> Member::onHeartbeat(const Heartbeat& hb, Time now) {
  HeartbeatAck ack{self_, hb.seq, {}};
  for (const auto& ip : hb.owned) {
    // A promise binds whoever gives it, whatever its role.
    // Only addresses this node knows are promised (an unknown one is not:
    // the owner then relies on its store lease alone).
    auto it = addrs_.find(ip);
    if (it == addrs_.end()) continue;
    auto& a = it->second;
    a.last_heartbeat = now;
    // Never while this node owns it or a takeover request of ours may still
    // be granted: a promise would then be worth nothing.
    if (owns(a) || a.ask_seq) continue;
    a.promised_until = std::max(a.promised_until, now + t_.promise);
    ack.promised.push_back(ip);
  }
  if (ack.promised.empty()) return std::nullopt;
  return ack;
}

std::optional<Time> Member::lastHeard(const IpAddress& ip) const {
  auto it = addrs_.find(ip);
  if (it == addrs_.end() || it->second.last_heartbeat == Time{}) return std::nullopt;
  return it->second.last_heartbeat;
}

void Member::setFenced(const std::set<IpAddress>& closed) {
  for (auto& [ip, a] : addrs_)
    if (a.releasing) a.fence_closed = closed.count(ip) > 0;
}

void Member::onAck(const HeartbeatAck& ack, Time /*now*/) {
  for (const auto& ip : ack.promised) {
    auto it = addrs_.find(ip);
    if (it == addrs_.end()) continue;
    auto& a = it->second;
    if (!owns(a) || !a.confirmed || a.counted != ack.from) continue;
    a.promise_until = std::max(a.promise_until, t_.proofUntil(timeOf(ack.echo), t_.promise));
  }
}

void Member::onReply(const LeaseReply& r, Time /*now*/) {
  // The store has answered this request: it ignores any older one still on
  // the way, so an older takeover request can no longer be granted.
  for (auto& [ip, a] : addrs_)
    if (a.ask_seq && r.echo >= a.ask_seq) a.ask_seq = 0;
  for (const auto& l : r.leases) {
    auto it = addrs_.find(l.ip);
    if (it == addrs_.end()) continue;
    auto& a = it->second;
    // The standby our request declared (none: not a request of ours for
    // this address); it and every older one are answered now.
    std::optional<std::string> standby;
    if (auto d = a.pending.find(r.echo); d != a.pending.end()) {
      standby = d->second;
      a.pending.erase(a.pending.begin(), std::next(d));
    }
    if (l.owner == self_ && l.granted && !l.handover.empty() && owns(a)) {
      // Planned handover: stop using it now; tell the store once the kernel
      // fence is closed (setFenced), never before.
      lose(a);
      a.owner = Owner{l.handover, l.epoch + 1};
      a.releasing = true;
      a.fence_closed = false;
      a.last_release = Time{};
      handed_over_.push_back(l.ip);
      continue;
    }
    if (l.owner != self_ || !l.granted) {
      if (l.owner.empty()) continue;              // the store does not know it (yet)
      if (l.owner != self_) a.releasing = false;  // the store has moved it
      if (l.owner == self_ && !owns(a) && l.epoch > a.owner.epoch) a.handed = true;
      if (l.epoch >= a.owner.epoch && l.owner != self_) {
        if (owns(a)) lose(a);
        a.owner = Owner{l.owner, l.epoch};
      }
      continue;
    }
    if (!standby) continue;
    if (!owns(a)) {
      if (l.epoch < a.owner.epoch) continue;  // stale
      // Granted while we were not the owner: a takeover (declared "" by it).
      a.owner = Owner{self_, l.epoch};
      a.declared = *standby;
      a.declared_since = r.echo;
      a.announce_left = kAnnouncements;
      a.handed = false;
      takeovers_.push_back(l.ip);
    }
    a.store_until = std::max(a.store_until, t_.proofUntil(timeOf(r.echo), t_.lease));
    if (*standby == a.declared && r.echo >= a.declared_since) {
      a.confirmed = true;
      a.counted = *standby;
    }
    if (!l.standby.empty() && l.standby != self_) a.role.standby = l.standby;
  }
}

void Member::onAnnounce(const Announce& an) {
  auto it = addrs_.find(an.ip);
  if (it == addrs_.end()) return;
  auto& a = it->second;
  if (an.epoch <= a.owner.epoch) return;
  if (owns(a) && an.from != self_) lose(a);
  a.owner = Owner{an.from, an.epoch};
}

bool Member::mayAsk(const Addr& a, Time now) const {
  // Handed to us by a planned handover: the owner has released it.
  if (a.handed) return !owns(a) && now - a.last_takeover_ask >= t_.heartbeat;
  return !owns(a) && a.role.standby == self_ && now >= a.promised_until &&
         now - a.last_heartbeat >= t_.promise && now >= start_ + t_.quiet() &&
         now - a.last_takeover_ask >= t_.heartbeat;
}

Member::Out Member::tick(Time now) {
  Out out;
  const uint64_t seq = seqOf(now);
  // A standby that may take over asks at every heartbeat period.
  const bool asking = std::any_of(addrs_.begin(), addrs_.end(), [&](const auto& e) {
    const auto& a = e.second;
    return mayAsk(a, now);
  });
  // An outstanding takeover request while the owner is heard again: a
  // request of no content makes the store drop it (then promises resume).
  const bool flush = std::any_of(addrs_.begin(), addrs_.end(), [&](const auto& e) {
    return e.second.ask_seq && !mayAsk(e.second, now) && now - last_renew_ >= t_.heartbeat;
  });
  // A release the kernel fence has made true goes to the store at once.
  const bool release =
      healthy_ && std::any_of(addrs_.begin(), addrs_.end(), [&](const auto& e) {
        const auto& a = e.second;
        return a.releasing && a.fence_closed && now - a.last_release >= t_.heartbeat;
      });
  if (now - last_renew_ >= t_.renew || (asking && healthy_) || flush || release) {
    LeaseRequest req{self_, seq, {}, {}};
    for (auto& [ip, a] : addrs_) {
      if (!healthy_) break;
      if (owns(a)) {
        const std::string standby = a.role.standby == self_ ? "" : a.role.standby;
        if (standby != a.declared) {
          // A new standby counts only once the store has it: until then only
          // the store lease proves anything (and "no standby" no longer does).
          a.counted.clear();
          a.promise_until = Time{};
          a.confirmed = false;
          a.declared = standby;
          a.declared_since = seq;
        }
        a.pending[seq] = a.declared;
        req.renew.push_back({ip, a.declared});
      } else if (a.releasing) {
        if (a.fence_closed) {
          a.last_release = now;
          req.released.push_back(ip);
        }
      } else if (mayAsk(a, now)) {
        a.last_takeover_ask = now;
        a.ask_seq = seq;
        a.pending[seq] = "";
        req.takeover.push_back(ip);
      }
      // Requests never answered are forgotten after a while.
      while (!a.pending.empty() && timeOf(a.pending.begin()->first) + t_.quiet() < now)
        a.pending.erase(a.pending.begin());
    }
    last_renew_ = now;
    if (!req.renew.empty() || !req.takeover.empty() || !req.released.empty() || flush)
      out.request = std::move(req);
  }
  if (now - last_heartbeat_ >= t_.heartbeat) {
    std::map<std::string, Heartbeat> by_standby;
    for (const auto& [ip, a] : addrs_) {
      if (!healthy_ || !owns(a) || a.declared.empty()) continue;
      auto& hb = by_standby[a.declared];
      hb.from = self_;
      hb.seq = seq;
      hb.owned.push_back(ip);
    }
    for (auto& [to, hb] : by_standby) out.heartbeats.emplace_back(to, std::move(hb));
    last_heartbeat_ = now;
  }
  for (auto& [ip, a] : addrs_) {
    if (!owns(a) || a.announce_left <= 0) continue;
    if (a.announce_left < kAnnouncements && now - a.last_announce < t_.heartbeat) continue;
    a.announce_left--;
    a.last_announce = now;
    out.announces.push_back(Announce{self_, ip, a.owner.epoch});
  }
  out.takeovers = std::exchange(takeovers_, {});
  return out;
}

std::map<IpAddress, Time> Member::live(Time now) const {
  std::map<IpAddress, Time> out;
  if (!healthy_) return out;
  for (const auto& [ip, a] : addrs_) {
    if (!owns(a)) continue;
    if (a.confirmed && a.counted.empty()) {
      out[ip] = kForever;
      continue;
    }
    Time until = a.store_until;
    if (a.confirmed && !a.counted.empty()) until = std::max(until, a.promise_until);
    if (until > now) out[ip] = until;
  }
  return out;
}

std::map<IpAddress, Member::Owner> Member::owners() const {
  std::map<IpAddress, Owner> out;
  for (const auto& [ip, a] : addrs_)
    if (!a.owner.node.empty()) out[ip] = a.owner;
  return out;
}

}  // namespace nsegress::ownership
