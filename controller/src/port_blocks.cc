#include "nsegress/controller/port_blocks.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace nsegress::controller {

namespace {

// Pod addresses claimed by pods of more than one namespace are translated
// for none (common/gateway_view.h): they get no block either.
std::set<IpAddress> ambiguousPodIps(const World& world) {
  std::map<IpAddress, const std::string*> owner;
  std::set<IpAddress> out;
  for (const auto& p : world.pods)
    for (const auto& ip : p.ips)
      if (auto [it, fresh] = owner.emplace(ip, &p.ns); !fresh && *it->second != p.ns)
        out.insert(ip);
  return out;
}

// The pool of an assigned, usable address, if it gives port blocks.
const Pool* blockPool(const World& world, const AddressRecord& r, Seconds now) {
  if (r.state != AddressState::kAssigned || !r.usable(now)) return nullptr;
  auto it = world.pools.find(r.pool);
  if (it == world.pools.end() || it->second.invalid || !it->second.port_block_size) return nullptr;
  return &it->second;
}

}  // namespace

BlockPlan planPortBlocks(const World& world, const Ledger& ledger, const BlockBook& book,
                         Seconds now) {
  BlockPlan plan;
  const auto ambiguous = ambiguousPodIps(world);
  // Pods wanting a block, per egress address: (name, pod address).
  std::map<IpAddress, std::vector<std::pair<std::string, IpAddress>>> wanting;
  std::map<IpAddress, const Pool*> pool_of;
  std::map<std::string, std::vector<const AddressRecord*>> addresses_of;
  for (const auto& [ip, r] : ledger)
    if (const Pool* p = blockPool(world, r, now)) {
      pool_of[ip] = p;
      addresses_of[r.ns].push_back(&r);
    }
  // An assigned address whose pool turned invalid (a typo) keeps its blocks
  // as they are: its pods keep theirs, new pods get none (fail-closed);
  // attribution is never switched off by a broken spec.
  std::set<IpAddress> frozen;
  for (const auto& b : book.held) {
    auto it = ledger.find(b.egress);
    if (it == ledger.end() || pool_of.count(b.egress) || frozen.count(b.egress)) continue;
    const auto& r = it->second;
    auto pit = world.pools.find(r.pool);
    if (r.state == AddressState::kAssigned && r.usable(now) && pit != world.pools.end() &&
        pit->second.invalid) {
      frozen.insert(b.egress);
      addresses_of[r.ns].push_back(&r);
    }
  }
  for (const auto& pod : world.pods) {
    auto it = addresses_of.find(pod.ns);
    if (it == addresses_of.end()) continue;
    for (const auto& pip : pod.ips) {
      if (ambiguous.count(pip)) continue;
      for (const AddressRecord* r : it->second)
        if (r->ip.family() == pip.family()) wanting[r->ip].emplace_back(pod.name, pip);
    }
  }
  // Keep what still fits; close the rest.
  std::map<IpAddress, std::set<uint16_t>> taken;  // first ports held
  std::set<std::tuple<IpAddress, std::string, IpAddress>> has_block;
  for (const auto& b : book.held) {
    bool keep = false;
    if (frozen.count(b.egress)) {
      auto& w = wanting[b.egress];
      keep = b.ns == ledger.at(b.egress).ns &&
             std::find(w.begin(), w.end(), std::pair{b.pod, b.pod_ip}) != w.end() &&
             !has_block.count({b.egress, b.pod, b.pod_ip});
    } else if (auto it = pool_of.find(b.egress); it != pool_of.end()) {
      const auto& r = ledger.at(b.egress);
      const uint32_t size = it->second->port_block_size;
      const bool on_grid = b.first >= Pool::kFirstBlockPort &&
                           (b.first - Pool::kFirstBlockPort) % size == 0 &&
                           uint32_t(b.last) == b.first + size - 1;
      auto& w = wanting[b.egress];
      const bool pod_here = std::find(w.begin(), w.end(), std::pair{b.pod, b.pod_ip}) != w.end();
      keep = on_grid && b.ns == r.ns && pod_here && !has_block.count({b.egress, b.pod, b.pod_ip}) &&
             !taken[b.egress].count(b.first);
    }
    if (keep) {
      taken[b.egress].insert(b.first);
      has_block.insert({b.egress, b.pod, b.pod_ip});
    } else {
      PortBlock c = b;
      c.to = std::max(now, b.from);
      plan.closed.push_back(c);
    }
  }
  auto last_closed = book.last_closed;
  for (const auto& c : plan.closed) last_closed[{c.egress, c.first}] = c.to;
  // New pods: the free block given back longest ago.
  for (auto& [egress, pods] : wanting) {
    std::sort(pods.begin(), pods.end());
    if (frozen.count(egress)) {  // nothing new is cut from an invalid pool
      for (const auto& [name, pip] : pods)
        if (!has_block.count({egress, name, pip}))
          plan.starved.push_back(ledger.at(egress).ns + "/" + name);
      continue;
    }
    const Pool& pool = *pool_of.at(egress);
    const auto& r = ledger.at(egress);
    std::vector<std::pair<Seconds, uint16_t>> free;  // (last closed, first port)
    for (uint32_t i = 0; i < pool.portBlocks(); ++i) {
      const auto first = static_cast<uint16_t>(Pool::kFirstBlockPort + i * pool.port_block_size);
      if (taken[egress].count(first)) continue;
      auto lc = last_closed.find({egress, first});
      free.emplace_back(lc == last_closed.end() ? 0 : lc->second, first);
    }
    std::sort(free.begin(), free.end());
    size_t next = 0;
    for (const auto& [name, pip] : pods) {
      if (has_block.count({egress, name, pip})) continue;
      if (next == free.size()) {
        plan.starved.push_back(r.ns + "/" + name);
        continue;
      }
      const uint16_t first = free[next++].second;
      plan.opened.push_back(PortBlock{egress, first,
                                      static_cast<uint16_t>(first + pool.port_block_size - 1), r.ns,
                                      name, pip, now, 0});
      has_block.insert({egress, name, pip});
    }
  }
  std::sort(plan.starved.begin(), plan.starved.end());
  plan.starved.erase(std::unique(plan.starved.begin(), plan.starved.end()), plan.starved.end());
  return plan;
}

void applyBlockPlan(BlockBook& book, const BlockPlan& plan) {
  for (const auto& c : plan.closed) {
    std::erase_if(book.held, [&](const PortBlock& b) {
      return b.egress == c.egress && b.first == c.first && b.pod == c.pod && b.from == c.from;
    });
    book.last_closed[{c.egress, c.first}] = c.to;
  }
  book.held.insert(book.held.end(), plan.opened.begin(), plan.opened.end());
}

std::optional<PortBlock> blockAt(const std::vector<PortBlock>& blocks, const IpAddress& egress,
                                 uint16_t port, Seconds at) {
  std::optional<PortBlock> out;
  for (const auto& b : blocks) {
    if (b.egress != egress || port < b.first || port > b.last) continue;
    if (at < b.from || (!b.held() && at >= b.to)) continue;
    if (!out || b.from > out->from) out = b;
  }
  return out;
}

std::map<std::string, BlockUsage> blockUsage(const World& world, const Ledger& ledger,
                                             const BlockBook& book, const BlockPlan& last) {
  std::map<std::string, BlockUsage> out;
  for (const auto& [name, p] : world.pools)
    if (!p.invalid && p.port_block_size) out[name].per_address = p.portBlocks();
  for (const auto& b : book.held)
    if (auto it = ledger.find(b.egress); it != ledger.end() && out.count(it->second.pool))
      out[it->second.pool].held++;
  for (const auto& s : last.starved) {
    const std::string ns = s.substr(0, s.find('/'));
    for (const auto& [ip, r] : ledger)
      if (r.ns == ns && r.state == AddressState::kAssigned && out.count(r.pool)) {
        out[r.pool].starved++;
        break;
      }
  }
  return out;
}

}  // namespace nsegress::controller
