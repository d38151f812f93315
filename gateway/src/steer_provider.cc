#include "nsegress/gateway/steer_provider.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace nsegress::gateway {

namespace {

std::optional<Hop> hopTo(const NodeEntry& n, const SteerConfig& c) {
  if (!n.ipv4) return std::nullopt;  // a slot is known by its gateway's IPv4 address
  Hop h;
  h.via4 = *n.ipv4;
  if (c.tunnel) {
    h.dev = c.tunnel_name;
    h.mac = tunnelMac(n.name);
    h.via6 = tunnelLinkLocal(h.mac);
  } else {
    h.dev = c.device;
    h.via6 = n.ipv6;
  }
  return h;
}

}  // namespace

SteerView steerView(const DesiredState& d, const SteerConfig& c) {
  SteerView v;
  const NodeEntry* self = d.self();
  if (!self) return v;
  if (c.tunnel) {
    if (!self->ipv4) return v;
    v.tunnel = TunnelSpec{c.tunnel_name, *self->ipv4,           c.vni,   c.port,
                          c.tunnelMtu(), tunnelMac(self->name), c.device};
  }
  const std::set<IpAddress> local(self->pod_ips.begin(), self->pod_ips.end());
  std::map<std::string, std::optional<Hop>> hops;
  for (const auto& ns : d.namespaces) {
    for (const auto& pod : ns.pod_ips) {
      if (!local.count(pod)) continue;
      const std::string& g = ns.gatewayFor(pod.family());
      // Hosted here (SNAT) or nowhere (fail-closed): not steered.
      if (g.empty() || g == d.gateway) continue;
      auto it = hops.find(g);
      if (it == hops.end()) {
        const NodeEntry* n = d.node(g);
        it = hops.emplace(g, n ? hopTo(*n, c) : std::nullopt).first;
      }
      const auto& hop = it->second;
      if (!hop || (!pod.isV4() && !hop->via6)) continue;
      if (!v.hops.count(g) && v.hops.size() >= static_cast<size_t>(kMaxSlots)) continue;
      v.hops.emplace(g, *hop);
      v.steered[pod] = g;
    }
  }
  if (!c.tunnel) return v;
  // Pods of namespaces hosted here, by family.
  std::set<IpAddress> hosted_here;
  for (const auto& ns : d.namespaces)
    for (const auto& pod : ns.pod_ips)
      if (ns.gatewayFor(pod.family()) == d.gateway) hosted_here.insert(pod);
  for (const auto& n : d.nodes) {
    if (n.name == d.gateway || !n.ipv4) continue;
    v.nodes.insert(*n.ipv4);
    for (const auto& pod : n.pod_ips) {
      v.peers.emplace(*n.ipv4, pod);
      if (!hosted_here.count(pod)) continue;
      if (!v.hops.count(n.name)) {
        if (v.hops.size() >= static_cast<size_t>(kMaxSlots)) break;
        v.hops.emplace(n.name, *hopTo(n, c));
      }
      v.returns[pod] = n.name;
    }
  }
  return v;
}

Result<SteerPlan> planSteering(const SteerView& want, const ObservedRoutes& routes,
                               const ObservedNft& nft) {
  using K = NftOp::Kind;
  SteerPlan p;
  if (want.tunnel && (!routes.tunnel || *routes.tunnel != *want.tunnel)) p.tunnel = want.tunnel;

  // Slots: a gateway keeps the slot whose next hop has its address.
  std::map<std::string, int> slot_of;
  std::set<int> used;
  for (const auto& [g, hop] : want.hops)
    for (const auto& [s, h] : routes.hops)
      if (h.via4 == hop.via4 && !used.count(s)) {
        slot_of[g] = s;
        used.insert(s);
        break;
      }
  int next = 1;
  for (const auto& [g, hop] : want.hops) {
    if (slot_of.count(g)) continue;
    // Never a slot still in use by another gateway's flows: it is cleared
    // first (retire), and only reused by a later reconcile.
    while (next <= kMaxSlots && (used.count(next) || routes.hops.count(next))) ++next;
    if (next > kMaxSlots)
      return makeError(ENOSPC, "steering: no free slot for node " + g + " (at most " +
                                   std::to_string(kMaxSlots) + " peers)");
    slot_of[g] = next;
    used.insert(next);
  }
  for (const auto& [g, hop] : want.hops) {
    const int s = slot_of[g];
    if (!routes.slots.count(s)) p.add_slots.push_back(s);
    auto it = routes.hops.find(s);
    if (it == routes.hops.end() || it->second != hop) p.set_hops.emplace_back(s, hop);
  }
  for (const auto& [s, h] : routes.hops)
    if (!used.count(s)) p.clear_hops.emplace_back(s, h);

  // The steer map: a changed mark is a delete and an add in one transaction.
  std::vector<NftOp> dels, adds;
  for (const auto& [pod, g] : want.steered) {
    const uint32_t mark = markOfSlot(slot_of[g]);
    auto it = nft.steer.find(pod);
    if (it != nft.steer.end() && it->second == mark) continue;
    if (it != nft.steer.end()) {
      dels.push_back(NftOp{K::kDelSteer, "", pod, {}, {}, it->second});
      const uint32_t from = it->second;
      const Family family = pod.family();
      auto rp = std::find_if(p.repins.begin(), p.repins.end(), [&](const ConntrackRepin& r) {
        return r.from == from && r.to == mark && r.sources.front().family() == family;
      });
      if (rp == p.repins.end())
        p.repins.push_back({{pod}, it->second, mark, kSteerMarkMask | kReturnFlag});
      else
        rp->sources.push_back(pod);
    }
    adds.push_back(NftOp{K::kAddSteer, "", pod, {}, {}, mark});
  }
  for (const auto& [pod, mark] : nft.steer)
    if (!want.steered.count(pod)) p.retire.push_back(NftOp{K::kDelSteer, "", pod, {}, {}, mark});
  for (const auto& [pod, n] : want.returns) {
    const uint32_t mark = markOfSlot(slot_of[n]) | kReturnFlag;
    auto it = nft.returns.find(pod);
    if (it != nft.returns.end() && it->second == mark) continue;
    if (it != nft.returns.end()) dels.push_back(NftOp{K::kDelReturn, "", pod, {}, {}, it->second});
    adds.push_back(NftOp{K::kAddReturn, "", pod, {}, {}, mark});
  }
  for (const auto& [pod, mark] : nft.returns)
    if (!want.returns.count(pod)) p.retire.push_back(NftOp{K::kDelReturn, "", pod, {}, {}, mark});
  for (const auto& n : want.nodes)
    if (!nft.nodes.count(n)) adds.push_back(NftOp{K::kAddNode, "", n, {}, {}});
  for (const auto& n : nft.nodes)
    if (!want.nodes.count(n)) p.retire.push_back(NftOp{K::kDelNode, "", n, {}, {}});
  for (const auto& [node, pod] : want.peers)
    if (!nft.peers.count({node, pod})) adds.push_back(NftOp{K::kAddPeer, "", pod, node, {}});
  for (const auto& [node, pod] : nft.peers)
    if (!want.peers.count({node, pod})) p.retire.push_back(NftOp{K::kDelPeer, "", pod, node, {}});
  p.install = std::move(dels);
  p.install.insert(p.install.end(), adds.begin(), adds.end());
  return p;
}

Status SteerProvider::observe() {
  if (!s_.hasModel())
    if (auto r = s_.observe(); !r) return r;
  auto r = routes_.observe();
  if (!r) return r.error();
  model_ = std::move(*r);
  return okStatus();
}

Status SteerProvider::install(const DesiredState& desired, ExecStats& stats) {
  planned_.reset();
  auto p = planSteering(steerView(desired, cfg_), *model_, s_.model());
  if (!p) return p.error();
  stats.planned_ops += p->size();
  if (p->tunnel) {
    // A new or rebuilt device has none of the next hops and entries that
    // were on it: read the kernel again and plan the rest from that.
    if (auto r = routes_.ensureTunnel(*p->tunnel); !r) return r;
    ++stats.route_ops;
    if (auto r = observe(); !r) return r;
    p = planSteering(steerView(desired, cfg_), *model_, s_.model());
    if (!p) return p.error();
    p->tunnel.reset();
    stats.planned_ops += p->size();
  }
  for (int s : p->add_slots) {
    if (auto r = routes_.addSlot(s); !r) return r;
    ++stats.route_ops;
    model_->slots.insert(s);
  }
  for (const auto& [s, hop] : p->set_hops) {
    if (auto r = routes_.setHop(s, hop); !r) return r;
    ++stats.route_ops;
    model_->hops[s] = hop;
  }
  if (auto r = s_.apply(p->install, stats); !r) return r;
  for (const auto& rp : p->repins) {
    // Best effort: a flow left pinned to a failed gateway is dropped there
    // (never leaves with another address), and the next change retries.
    auto n = ct_.repin(rp);
    if (!n)
      spdlog::warn("steering: re-pinning flows to a moved gateway: {}", n.error().message);
    else if (*n)
      spdlog::info("steering: {} established flows follow their gateway", *n);
  }
  planned_ = std::move(*p);
  return okStatus();
}

Status SteerProvider::retire(const DesiredState&, ExecStats& stats) {
  if (!planned_) return okStatus();
  const SteerPlan p = std::move(*planned_);
  planned_.reset();
  if (auto r = s_.apply(p.retire, stats); !r) return r;
  for (const auto& [s, hop] : p.clear_hops) {
    if (auto r = routes_.clearHop(s, hop); !r) return r;
    ++stats.route_ops;
    model_->hops.erase(s);
  }
  return okStatus();
}

}  // namespace nsegress::gateway
