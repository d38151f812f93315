#include "nsegress/common/gateway_view.h"

#include <algorithm>
#include <map>
#include <set>

namespace nsegress {

void GatewayViews::addNamespace(const Namespace& ns) {
  existing_.insert(ns.name);
  if (ns.requestsEgress()) listed_[ns.name];
}

void GatewayViews::addRecord(const AddressRecord& r, bool port_blocks) {
  if (!r.ns.empty()) tombstones_.insert(r.ns);
  if (r.state != AddressState::kAssigned || !r.usable(now_)) return;
  auto& l = listed_[r.ns];
  l.assigned.emplace_back(r.node, r.ip);
  if (port_blocks) l.blocks_required = true;
}

void GatewayViews::addBlock(const PortBlock& b) {
  if (!b.held()) return;
  if (auto it = listed_.find(b.ns); it != listed_.end()) it->second.blocks.push_back(b);
}

void GatewayViews::addNode(const Node& n) {
  nodes_[n.name] = n;
}

void GatewayViews::addPod(const Pod& p) {
  auto it = listed_.find(p.ns);
  if (it == listed_.end()) {
    // A deleted namespace that held an address: its draining pods stay
    // fail-closed (never back to the node's address).
    if (p.ips.empty() || existing_.count(p.ns) || !tombstones_.count(p.ns)) return;
    it = listed_.emplace(p.ns, Listed{{}, {}, {}, true}).first;
  }
  it->second.pods.insert(it->second.pods.end(), p.ips.begin(), p.ips.end());
  if (!p.node.empty())
    for (const auto& ip : p.ips) it->second.pod_nodes.emplace_back(p.node, ip);
}

GatewayView GatewayViews::forNode(const std::string& node) const {
  GatewayView v;
  v.state.gateway = node;
  for (const auto& [name, l] : listed_) {
    NamespaceEgress e;
    e.name = name;
    // Where each family's address is hosted (the lowest address, as below).
    std::optional<IpAddress> lowest[2];
    for (const auto& [n, ip] : l.assigned) {
      auto& lo = lowest[ip.isV4() ? 0 : 1];
      auto& gw = ip.isV4() ? e.gateway_v4 : e.gateway_v6;
      // (A name that could not be a node's hosts nothing: never written.)
      if (!n.empty() && isDnsSubdomain(n) && (!lo || ip < *lo)) lo = ip, gw = n;
    }
    for (const auto& [n, ip] : l.assigned) {
      if (n != node) continue;
      auto& slot = ip.isV4() ? e.egress_v4 : e.egress_v6;
      if (slot && *slot != ip) {
        v.warnings.push_back("namespace " + name + ": the ledger assigns both " + slot->str() +
                             " and " + ip.str() + " on this node; using the lower");
        if (ip < *slot) slot = ip;
      } else {
        slot = ip;
      }
    }
    e.pod_ips = l.pods;
    e.port_blocks_required = l.blocks_required;
    // Blocks of its pods on its addresses (any node's: a standby taking an
    // address over needs them too).
    const std::set<IpAddress> pods(l.pods.begin(), l.pods.end());
    for (const auto& b : l.blocks) {
      const bool ours = std::any_of(l.assigned.begin(), l.assigned.end(),
                                    [&](const auto& a) { return a.second == b.egress; });
      if (ours && pods.count(b.pod_ip) && !e.blockOf(b.pod_ip, b.egress))
        e.port_blocks.push_back(PodPortBlock{b.egress, b.pod_ip, b.first, b.last});
    }
    v.state.namespaces.push_back(std::move(e));
  }
  // A pod address seen on two nodes is local to neither (never steered).
  std::map<IpAddress, std::string> node_of;
  std::set<IpAddress> two_nodes;
  for (const auto& [name, l] : listed_)
    for (const auto& [n, ip] : l.pod_nodes)
      if (auto [it, fresh] = node_of.emplace(ip, n); !fresh && it->second != n)
        two_nodes.insert(ip);
  std::map<std::string, std::vector<IpAddress>> on_node;
  for (const auto& [ip, n] : node_of)
    if (!two_nodes.count(ip)) on_node[n].push_back(ip);
  for (const auto& [name, n] : nodes_) {
    NodeEntry ne{name, n.ipv4, n.ipv6, {}};
    if (auto it = on_node.find(name); it != on_node.end()) {
      ne.pod_ips = it->second;
    }
    v.state.nodes.push_back(std::move(ne));
  }
  for (const auto& ip : dropAmbiguousPodIps(v.state))
    v.warnings.push_back("pod address " + ip.str() +
                         " is claimed by pods of more than one namespace: not translated");
  return v;
}

std::vector<std::string> GatewayViews::nodesWithAddresses() const {
  std::set<std::string> nodes;
  for (const auto& [name, l] : listed_)
    for (const auto& [n, ip] : l.assigned)
      if (!n.empty()) nodes.insert(n);
  return {nodes.begin(), nodes.end()};
}

}  // namespace nsegress
