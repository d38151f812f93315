#include "nsegress/common/gateway_view.h"

#include <set>

namespace nsegress {

void GatewayViews::addNamespace(const Namespace& ns) {
  existing_.insert(ns.name);
  if (ns.requestsEgress()) listed_[ns.name];
}

void GatewayViews::addRecord(const AddressRecord& r) {
  if (!r.ns.empty()) tombstones_.insert(r.ns);
  if (r.state != AddressState::kAssigned) return;
  listed_[r.ns].assigned.emplace_back(r.node, r.ip);
}

void GatewayViews::addPod(const Pod& p) {
  auto it = listed_.find(p.ns);
  if (it == listed_.end()) {
    // A deleted namespace that held an address: its draining pods stay
    // fail-closed (never back to the node's address).
    if (p.ips.empty() || existing_.count(p.ns) || !tombstones_.count(p.ns)) return;
    it = listed_.emplace(p.ns, Listed{{}, {}, true}).first;
  }
  it->second.pods.insert(it->second.pods.end(), p.ips.begin(), p.ips.end());
}

GatewayView GatewayViews::forNode(const std::string& node) const {
  GatewayView v;
  v.state.gateway = node;
  for (const auto& [name, l] : listed_) {
    NamespaceEgress e;
    e.name = name;
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
    v.state.namespaces.push_back(std::move(e));
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
