#include "nsegress/common/failover_roles.h"

#include <set>

namespace nsegress {

std::string chooseStandby(const IpAddress& ip, const std::string& owner,
                          const std::vector<std::string>& candidates) {
  std::string best;
  uint64_t best_score = 0;
  for (const auto& n : candidates) {
    if (n == owner) continue;
    uint64_t h = 1469598103934665603ULL;  // FNV-1a of "ip/node"
    for (char c : ip.str() + "/" + n) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    if (best.empty() || h > best_score) best = n, best_score = h;
  }
  return best;
}

std::map<IpAddress, AddressRole> failoverRoles(const World& world,
                                               const std::map<IpAddress, AddressRecord>& ledger) {
  std::map<IpAddress, AddressRole> out;
  for (const auto& [ip, r] : ledger) {
    if (r.state != AddressState::kAssigned || r.node.empty()) continue;
    std::vector<std::string> candidates;
    auto pit = world.pools.find(r.pool);
    for (const auto& [name, n] : world.nodes)
      if (n.ready && !isDrained(n) && pit != world.pools.end() && !pit->second.invalid &&
          pit->second.node_selector.matches(n.labels))
        candidates.push_back(name);
    // Owner and epoch as one pair, from the store's record where it has
    // one: the ledger's node follows the store only a reconcile later, and
    // a Member given (old owner, new epoch) would ignore the move.
    auto lo = world.leases.find(ip);
    const bool stored = lo != world.leases.end() && !lo->second.owner.empty();
    const std::string& owner = stored ? lo->second.owner : r.node;
    out[ip] = AddressRole{ip, r.ns, owner, chooseStandby(ip, owner, candidates),
                          lo != world.leases.end() ? lo->second.epoch : 1};
  }
  return out;
}

std::map<IpAddress, std::string> plannedHandovers(
    const World& world, const std::map<IpAddress, AddressRecord>& ledger) {
  std::map<IpAddress, std::string> out;
  const auto roles = failoverRoles(world, ledger);
  for (const auto& [ip, role] : roles) {
    auto lo = world.leases.find(ip);
    if (lo == world.leases.end() || lo->second.owner.empty()) continue;
    auto n = world.nodes.find(lo->second.owner);
    if (n == world.nodes.end() || !isDrained(n->second)) continue;
    // To its standby: the node that has been receiving its flows.
    if (!role.standby.empty() && role.standby != lo->second.owner) out[ip] = role.standby;
  }
  return out;
}

void attachRoles(DesiredState& state, const std::map<IpAddress, AddressRole>& roles) {
  std::set<std::string> listed;
  for (const auto& ns : state.namespaces) listed.insert(ns.name);
  for (const auto& [ip, role] : roles)
    if (listed.count(role.ns)) state.addresses.push_back(role);
}

}  // namespace nsegress
