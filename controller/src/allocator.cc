#include "nsegress/controller/allocator.h"
#include "nsegress/controller/port_blocks.h"

#include "nsegress/common/failover_roles.h"
#include "nsegress/common/gateway_view.h"

#include <algorithm>
#include <ctime>
#include <set>

namespace nsegress::controller {

std::string toString(Phase p) {
  switch (p) {
    case Phase::kAssigned:
      return "Assigned";
    case Phase::kPending:
      return "Pending";
    case Phase::kRefused:
      return "Refused";
  }
  return "?";
}

namespace {

bool validPoolName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  return std::isalnum(static_cast<unsigned char>(s.front())) &&
         std::isalnum(static_cast<unsigned char>(s.back()));
}

struct Request {
  std::optional<std::string> pool;
  std::optional<IpAddress> ip;
  std::string text;
};

struct Outcome {
  Phase phase;  // kAssigned = success
  IpAddress ip;
  std::string pool;
  bool reclaimed = false;
  std::string reason;
};

class Allocator {
 public:
  Allocator(const World& w, const Ledger& l, Seconds now,
            const std::map<std::string, NamespaceStatus>& prev,
            const std::map<IpAddress, std::string>& acks)
      : w_(w), now_(now), prev_(prev), acks_(acks) {
    out_.ledger = l;
  }

  Allocation run() {
    acknowledgeRemovals();
    expireQuarantines();
    releaseGone();
    releaseDuplicates();
    for (const auto& [name, ns] : w_.namespaces)
      if (annotated(ns)) reconcileNamespace(ns);
    for (const auto& [ip, rec] : out_.ledger) {
      auto it = original_.find(ip);
      if (it == original_.end() || !(it->second == rec)) out_.changed.push_back(rec);
    }
    return std::move(out_);
  }

  void snapshotOriginal() { original_ = out_.ledger; }

 private:
  static bool annotated(const Namespace& ns) { return ns.requestsEgress(); }

  void event(std::string kind, const std::string& ns, const std::optional<IpAddress>& ip,
             const std::string& pool, const std::string& node, std::string message) {
    out_.events.push_back(
        AuditEvent{now_, std::move(kind), ns, ip ? ip->str() : "", pool, node, std::move(message)});
  }

  void expireQuarantines() {
    for (auto& [ip, r] : out_.ledger) {
      if (r.state == AddressState::kQuarantined && r.quarantine_until <= now_) {
        r.state = AddressState::kFree;
        event("QuarantineExpired", r.ns, ip, r.pool, "",
              ip.str() + " left quarantine (last held by " + r.ns + ") and is free again");
      }
    }
  }

  // The decommission handshake's second half: the firewall side removed
  // the address; its quarantine starts now.
  void acknowledgeRemovals() {
    for (const auto& [ip, by] : acks_) {
      auto it = out_.ledger.find(ip);
      if (it == out_.ledger.end() || it->second.state != AddressState::kPendingFirewallCleanup)
        continue;
      AddressRecord& r = it->second;
      r.state = AddressState::kQuarantined;
      r.quarantine_until = now_ + quarantineOf(r.pool);
      event("RemovalAcknowledged", r.ns, ip, r.pool, "",
            ip.str() + " removal acknowledged by " + by + " (" +
                std::to_string(now_ - r.released_at) + " s after its release); quarantined until " +
                formatTime(r.quarantine_until));
    }
  }

  const Pool* poolOf(const std::string& name) const {
    auto it = w_.pools.find(name);
    return it == w_.pools.end() || it->second.invalid ? nullptr : &it->second;
  }

  Seconds quarantineOf(const std::string& pool) const {
    auto it = w_.pools.find(pool);
    return it != w_.pools.end() && !it->second.invalid ? it->second.quarantine : 7 * 24 * 3600;
  }

  void release(AddressRecord& r, const std::string& why) {
    r.released_at = now_;
    r.usable_at = 0;
    const std::string node = r.node;
    r.node.clear();
    // An invalid pool's handshake and quarantine are unknown (a typo must
    // not turn the handshake off): it waits for an acknowledgement too.
    auto pit = w_.pools.find(r.pool);
    const bool unknown = pit != w_.pools.end() && pit->second.invalid;
    if (const Pool* p = poolOf(r.pool); (p && p->acknowledge_removal) || unknown) {
      r.state = AddressState::kPendingFirewallCleanup;
      r.quarantine_until = 0;
      event("Released", r.ns, r.ip, r.pool, node,
            r.ip.str() + " released by " + r.ns + " (" + why + "); out of the feeds, " +
                (unknown ? "its pool is invalid (its handshake and quarantine unknown): " : "") +
                "waiting for the firewall side to acknowledge its removal (nsegressctl ack " +
                r.ip.str() + ") before its quarantine starts");
      return;
    }
    r.state = AddressState::kQuarantined;
    r.quarantine_until = now_ + quarantineOf(r.pool);
    event("Released", r.ns, r.ip, r.pool, node,
          r.ip.str() + " released by " + r.ns + " (" + why + "); quarantined until " +
              formatTime(r.quarantine_until) + ", not given to another namespace before then");
  }

  void releaseGone() {
    for (auto& [ip, r] : out_.ledger) {
      if (r.state != AddressState::kAssigned) continue;
      auto it = w_.namespaces.find(r.ns);
      if (it == w_.namespaces.end())
        release(r, "namespace deleted");
      else if (!annotated(it->second))
        release(r, "annotation removed");
    }
  }

  // One address per namespace. Two controllers that both believed they led
  // (split brain, diverging views) can each have assigned one: the lowest is
  // kept (the one gateways already use, see kube::gatewayView) and the others
  // are released into quarantine under the same namespace — never to anyone
  // else.
  void releaseDuplicates() {
    std::map<std::string, IpAddress> kept;
    for (auto& [ip, r] : out_.ledger) {
      if (r.state != AddressState::kAssigned) continue;
      auto [it, first] = kept.emplace(r.ns, ip);
      if (!first)
        release(r, "a second address for the namespace (assigned concurrently); keeping " +
                       it->second.str());
    }
  }

  AddressRecord* heldBy(const std::string& ns) {
    for (auto& [ip, r] : out_.ledger)
      if (r.state == AddressState::kAssigned && r.ns == ns) return &r;
    return nullptr;
  }

  std::optional<std::string> parse(const Namespace& ns, Request& req) {
    auto p = ns.annotations.find(kPoolAnnotation);
    auto i = ns.annotations.find(kIpAnnotation);
    if (p != ns.annotations.end()) {
      if (!validPoolName(p->second))
        return "annotation " + std::string(kPoolAnnotation) + ": \"" + p->second +
               "\" is not a valid pool name";
      req.pool = p->second;
      req.text = "pool " + p->second;
    }
    if (i != ns.annotations.end()) {
      auto a = IpAddress::parse(i->second);
      if (!a)
        return "annotation " + std::string(kIpAnnotation) + ": \"" + i->second +
               "\" is not an IP address";
      req.ip = *a;
      req.text = req.text.empty() ? "ip " + a->str() : req.text + ", ip " + a->str();
    }
    return std::nullopt;
  }

  // Is the pool usable by this namespace? nullopt = yes.
  std::optional<Outcome> poolRefusal(const Pool& p, const Namespace& ns) {
    if (p.invalid)
      return Outcome{
          Phase::kRefused,
          {},
          p.name,
          false,
          "pool " + p.name + " is invalid: " + *p.invalid + " (fix EgressPool " + p.name + ")"};
    if (!p.namespace_selector.matches(ns.labels))
      return Outcome{Phase::kRefused,
                     {},
                     p.name,
                     false,
                     "pool " + p.name + " does not allow namespace " + ns.name +
                         " (label the namespace to match the pool's namespaceSelector, or ask for "
                         "another pool)"};
    return std::nullopt;
  }

  std::optional<std::string> unavailable(const IpAddress& ip, const std::string& ns) {
    auto it = out_.ledger.find(ip);
    if (it == out_.ledger.end()) return std::nullopt;
    const auto& r = it->second;
    if (r.state == AddressState::kAssigned && r.ns != ns)
      return ip.str() + " is assigned to namespace " + r.ns;
    if (r.state == AddressState::kQuarantined && r.ns != ns)
      return ip.str() + " is in quarantine until " + formatTime(r.quarantine_until) +
             " (released by namespace " + r.ns + ")";
    if (r.state == AddressState::kPendingFirewallCleanup && r.ns != ns)
      return ip.str() + " waits for the firewall side to acknowledge its removal (released by " +
             "namespace " + r.ns + " at " + formatTime(r.released_at) + ")";
    return std::nullopt;
  }

  Outcome choose(const Namespace& ns, const Request& req) {
    if (req.ip) {
      std::vector<const Pool*> containing;
      for (const auto& [name, p] : w_.pools)
        if (p.contains(*req.ip)) containing.push_back(&p);
      if (req.pool) {
        auto it = w_.pools.find(*req.pool);
        if (it == w_.pools.end())
          return {Phase::kPending, {}, *req.pool, false, "pool " + *req.pool + " does not exist"};
        if (!it->second.contains(*req.ip))
          return {Phase::kRefused,
                  {},
                  *req.pool,
                  false,
                  "conflicting annotations: " + req.ip->str() + " is not in pool " + *req.pool};
        containing = {&it->second};
      }
      if (containing.empty())
        return {Phase::kRefused, {}, "", false, req.ip->str() + " is not in any EgressPool"};
      std::optional<Outcome> first_refusal;
      for (const Pool* p : containing) {
        if (auto r = poolRefusal(*p, ns)) {
          if (!first_refusal) first_refusal = r;
          continue;
        }
        if (p->excludes(*req.ip))
          return {Phase::kRefused,
                  {},
                  p->name,
                  false,
                  req.ip->str() + " is excluded from pool " + p->name};
        if (auto why = unavailable(*req.ip, ns.name))
          return {Phase::kPending, {}, p->name, false, *why};
        auto it = out_.ledger.find(*req.ip);
        bool reclaimed =
            it != out_.ledger.end() && (it->second.state == AddressState::kQuarantined ||
                                        it->second.state == AddressState::kPendingFirewallCleanup);
        return {Phase::kAssigned, *req.ip, p->name, reclaimed, ""};
      }
      return *first_refusal;
    }
    const std::string& pname = *req.pool;
    auto it = w_.pools.find(pname);
    if (it == w_.pools.end())
      return {Phase::kPending, {}, pname, false, "pool " + pname + " does not exist"};
    const Pool& p = it->second;
    if (auto r = poolRefusal(p, ns)) return *r;
    // The same namespace, back within its quarantine (or before the firewall
    // acknowledged its removal), gets its old address.
    for (const auto& [ip, r] : out_.ledger)
      if ((r.state == AddressState::kQuarantined ||
           r.state == AddressState::kPendingFirewallCleanup) &&
          r.ns == ns.name && r.pool == pname && p.contains(ip))
        return {Phase::kAssigned, ip, pname, true, ""};
    // The lowest address neither excluded nor held (Assigned or
    // Quarantined); Free records are reusable.
    const Ledger& l = out_.ledger;
    auto taken = [&](const IpAddress& a) {
      auto it = l.find(a);
      return it != l.end() && it->second.state != AddressState::kFree;
    };
    auto next_taken = [&](const IpAddress& a) -> std::optional<IpAddress> {
      for (auto it = l.upper_bound(a); it != l.end(); ++it)
        if (it->second.state != AddressState::kFree) return it->first;
      return std::nullopt;
    };
    if (auto free = p.lowestFree(taken, next_taken))
      return {Phase::kAssigned, *free, pname, false, ""};
    size_t assigned = 0, quarantined = 0, pending = 0;
    for (const auto& [ip, r] : out_.ledger) {
      if (!p.contains(ip)) continue;
      assigned += r.state == AddressState::kAssigned;
      quarantined += r.state == AddressState::kQuarantined;
      pending += r.state == AddressState::kPendingFirewallCleanup;
    }
    return {Phase::kPending,
            {},
            pname,
            false,
            "pool " + pname + " is exhausted: " + std::to_string(assigned) + " assigned, " +
                std::to_string(quarantined) + " in quarantine" +
                (pending ? ", " + std::to_string(pending) + " waiting for firewall cleanup" : "") +
                ", of " + std::to_string(p.size()) + " addresses"};
  }

  bool satisfies(const AddressRecord& held, const Request& req) const {
    if (req.ip && held.ip != *req.ip) return false;
    if (req.pool && held.pool != *req.pool) return false;
    return true;
  }

  // Place on a ready node matching the pool's nodeSelector: keep the current
  // one while it qualifies, else the least loaded (then by name).
  void place(AddressRecord& r, NamespaceStatus& st) {
    auto pit = w_.pools.find(r.pool);
    auto eligible = [&](const Node& n) {
      return n.ready && !isDrained(n) &&
             (pit == w_.pools.end() || pit->second.invalid ||
              pit->second.node_selector.matches(n.labels));
    };
    // Failover: the lease book decides who owns a known address (a takeover
    // moves it; nothing else may, docs/architecture.md "Failover").
    if (auto lo = w_.leases.find(r.ip); lo != w_.leases.end() && !lo->second.owner.empty()) {
      if (lo->second.owner != r.node) {
        const std::string old = r.node;
        r.node = lo->second.owner;
        auto o = w_.nodes.find(old);
        const bool planned = o != w_.nodes.end() && isDrained(o->second);
        event("Moved", r.ns, r.ip, r.pool, r.node,
              r.ip.str() +
                  (planned ? " handed over (drain) from gateway " : " failed over from gateway ") +
                  (old.empty() ? "(none)" : old) + " to " + r.node + " (epoch " +
                  std::to_string(lo->second.epoch) + ")");
      }
      return;
    }
    auto cur = w_.nodes.find(r.node);
    if (!r.node.empty() && cur != w_.nodes.end() && eligible(cur->second)) return;
    std::map<std::string, size_t> load;
    for (const auto& [ip, x] : out_.ledger)
      if (x.state == AddressState::kAssigned && !x.node.empty()) load[x.node]++;
    const Node* best = nullptr;
    for (const auto& [name, n] : w_.nodes) {
      if (!eligible(n)) continue;
      if (!best || load[name] < load[best->name]) best = &n;
    }
    const std::string old = r.node;
    r.node = best ? best->name : "";
    if (!best) {
      st.reason = "no ready gateway node matches pool " + r.pool +
                  "'s nodeSelector; traffic is held fail-closed";
      if (!old.empty())
        event("Moved", r.ns, r.ip, r.pool, "",
              r.ip.str() + " lost its gateway node " + old + "; no ready node qualifies");
    } else if (!old.empty() && old != r.node) {
      event("Moved", r.ns, r.ip, r.pool, r.node,
            r.ip.str() + " moved from gateway " + old + " to " + r.node);
    }
  }

  void statusEvent(const NamespaceStatus& st, const std::string& kind) {
    auto it = prev_.find(st.ns);
    if (it != prev_.end() && it->second.phase == st.phase && it->second.reason == st.reason) return;
    event(kind, st.ns, st.ip, st.pool, st.node, st.reason);
  }

  // An address still onboarding: in the feeds, not yet used; the namespace
  // waits fail-closed with the reason.
  void onboarding(const AddressRecord& r, NamespaceStatus& st) const {
    if (r.usable(now_)) return;
    st.phase = Phase::kPending;
    st.reason = "onboarding: " + r.ip.str() + " is published in the feeds; pods use it from " +
                formatTime(r.usable_at) + " (firewalls poll first); held fail-closed until then";
  }

  void reconcileNamespace(const Namespace& ns) {
    NamespaceStatus st;
    st.ns = ns.name;
    Request req;
    AddressRecord* held = heldBy(ns.name);
    if (auto bad = parse(ns, req)) {
      st.request = req.text;
      if (held) {  // never lose an address because of a bad edit
        st.phase = Phase::kAssigned;
        st.ip = held->ip;
        st.pool = held->pool;
        place(*held, st);
        st.node = held->node;
        st.reason = *bad + "; keeping " + held->ip.str();
        statusEvent(st, "Conflict");
      } else {
        st.phase = Phase::kRefused;
        st.reason = *bad;
        statusEvent(st, "Refused");
      }
      out_.statuses[ns.name] = st;
      return;
    }
    st.request = req.text;
    if (held && satisfies(*held, req)) {
      st.phase = Phase::kAssigned;
      st.ip = held->ip;
      st.pool = held->pool;
      auto pit = w_.pools.find(held->pool);
      if (pit == w_.pools.end())
        st.reason = "pool " + held->pool + " no longer exists; keeping " + held->ip.str();
      else if (pit->second.invalid)
        st.reason = "pool " + held->pool + " is invalid; keeping " + held->ip.str();
      else if (!pit->second.contains(held->ip) || pit->second.excludes(held->ip))
        st.reason = held->ip.str() + " is no longer in pool " + held->pool +
                    "'s addresses; keeping it until released";
      else if (!pit->second.namespace_selector.matches(ns.labels))
        st.reason = "pool " + held->pool + " no longer selects this namespace; keeping " +
                    held->ip.str() + " until released";
      place(*held, st);
      st.node = held->node;
      if (!st.reason.empty()) statusEvent(st, "Conflict");
      onboarding(*held, st);
      out_.statuses[ns.name] = st;
      return;
    }
    Outcome o = choose(ns, req);
    if (o.phase != Phase::kAssigned) {
      if (held) {  // a refused change keeps what the namespace has
        st.phase = Phase::kAssigned;
        st.ip = held->ip;
        st.pool = held->pool;
        place(*held, st);
        st.node = held->node;
        st.reason = "requested " + req.text + " cannot be satisfied (" + o.reason + "); keeping " +
                    held->ip.str();
        statusEvent(st, "Conflict");
      } else {
        st.phase = o.phase;
        st.pool = o.pool;
        st.reason = o.reason;
        statusEvent(st, o.phase == Phase::kRefused ? "Refused" : "Pending");
      }
      out_.statuses[ns.name] = st;
      return;
    }
    if (held) release(*held, "moved on request to " + req.text);
    AddressRecord& r = out_.ledger[o.ip];
    // Back before the firewall removed it: still allowed there, no onboarding.
    const bool still_allowed = r.state == AddressState::kPendingFirewallCleanup;
    const std::string keep_node = r.state == AddressState::kAssigned ? r.node : "";
    const std::string version = r.version;
    r = AddressRecord{o.ip, o.pool, AddressState::kAssigned, ns.name, keep_node, now_, 0, 0};
    r.version = version;
    if (const Pool* p = poolOf(o.pool); p && p->onboarding > 0 && !still_allowed)
      r.usable_at = now_ + p->onboarding;
    st.phase = Phase::kAssigned;
    st.ip = o.ip;
    st.pool = o.pool;
    place(r, st);
    st.node = r.node;
    event(o.reclaimed ? "Reclaimed" : "Assigned", ns.name, o.ip, o.pool, r.node,
          o.ip.str() + (o.reclaimed ? " returned to " : " assigned to ") + ns.name + " from pool " +
              o.pool + (r.node.empty() ? "" : ", hosted on gateway " + r.node) +
              (r.usable_at ? "; onboarding: used from " + formatTime(r.usable_at) : ""));
    onboarding(r, st);
    out_.statuses[ns.name] = st;
  }

  const World& w_;
  Seconds now_;
  const std::map<std::string, NamespaceStatus>& prev_;
  const std::map<IpAddress, std::string>& acks_;
  Allocation out_;
  Ledger original_;
};

}  // namespace

Allocation allocate(const World& world, const Ledger& ledger, Seconds now,
                    const std::map<std::string, NamespaceStatus>& previous,
                    const std::map<IpAddress, std::string>& acknowledged) {
  Allocator a(world, ledger, now, previous, acknowledged);
  a.snapshotOriginal();
  return a.run();
}

std::optional<Seconds> nextOnboardingEnd(const Ledger& ledger, Seconds now) {
  std::optional<Seconds> next;
  for (const auto& [ip, r] : ledger)
    if (r.state == AddressState::kAssigned && r.usable_at > now && (!next || r.usable_at < *next))
      next = r.usable_at;
  return next;
}

std::map<std::string, DesiredState> gatewayStates(const World& world, const Allocation& a,
                                                  Seconds now, const BlockBook* blocks) {
  GatewayViews views(now);
  for (const auto& [name, ns] : world.namespaces) views.addNamespace(ns);
  // Addresses with blocks held: still attributed by port if their pool
  // turned invalid (a typo never switches attribution off).
  std::set<IpAddress> with_blocks;
  if (blocks)
    for (const auto& b : blocks->held) with_blocks.insert(b.egress);
  for (const auto& [ip, r] : a.ledger) {
    auto pit = world.pools.find(r.pool);
    const bool known = pit != world.pools.end();
    views.addRecord(r, (known && !pit->second.invalid && pit->second.port_block_size) ||
                           (known && pit->second.invalid && with_blocks.count(ip)));
  }
  if (blocks)
    for (const auto& b : blocks->held) views.addBlock(b);
  for (const auto& p : world.pods) views.addPod(p);
  for (const auto& [name, n] : world.nodes) views.addNode(n);
  // Every node gets a state: gateways SNAT, every node steers its own pods.
  std::set<std::string> gateways;
  for (const auto& [name, n] : world.nodes) gateways.insert(name);
  for (const auto& [name, n] : world.nodes)
    for (const auto& [pn, p] : world.pools)
      if (!p.invalid && p.node_selector.matches(n.labels)) gateways.insert(name);
  for (const auto& n : views.nodesWithAddresses()) gateways.insert(n);
  std::map<std::string, DesiredState> out;
  const auto roles =
      world.failover ? failoverRoles(world, a.ledger) : std::map<IpAddress, AddressRole>{};
  for (const auto& g : gateways) {
    out[g] = views.forNode(g).state;
    attachRoles(out[g], roles);
  }
  return out;
}

std::map<std::string, PoolUsage> poolUsage(const std::map<std::string, Pool>& pools,
                                           const Ledger& ledger) {
  std::map<std::string, PoolUsage> out;
  for (const auto& [name, p] : pools) {
    auto& u = out[name];
    if (p.invalid)
      u.invalid = *p.invalid;
    else
      u.size = p.size();
  }
  for (const auto& [ip, r] : ledger) {
    auto it = out.find(r.pool);
    if (it == out.end()) continue;
    if (r.state == AddressState::kAssigned) it->second.assigned++;
    if (r.state == AddressState::kQuarantined) it->second.quarantined++;
    if (r.state == AddressState::kPendingFirewallCleanup) it->second.pending_cleanup++;
  }
  for (auto& [name, u] : out) {
    const uint64_t held = u.assigned + u.quarantined + u.pending_cleanup;
    u.free = u.size > held ? u.size - held : 0;
  }
  return out;
}

std::optional<std::string> whoHad(const std::vector<AuditEvent>& history, const IpAddress& ip,
                                  Seconds at) {
  std::optional<std::string> holder;
  const std::string key = ip.str();
  for (const auto& e : history) {
    if (e.at > at) break;
    if (e.ip != key) continue;
    if (e.kind == "Assigned" || e.kind == "Reclaimed")
      holder = e.ns;
    else if (e.kind == "Released")
      holder.reset();
  }
  return holder;
}

}  // namespace nsegress::controller
