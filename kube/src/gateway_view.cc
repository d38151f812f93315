#include "nsegress/kube/gateway_view.h"

#include <set>

#include "nsegress/common/kubernetes.h"
#include "nsegress/kube/informer.h"

namespace nsegress::kube {

using nlohmann::json;

namespace {

// A string member of an object, or "" (missing fields and wrong types alike).
std::string str(const json& o, const char* key) {
  if (!o.is_object()) return "";
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}
const json& obj(const json& o, const char* key) {
  static const json empty = json::object();
  if (!o.is_object()) return empty;
  auto it = o.find(key);
  return it != o.end() && it->is_object() ? *it : empty;
}

}  // namespace

GatewayView gatewayView(const std::string& node, const std::map<std::string, json>& namespaces,
                        const std::map<std::string, json>& pods,
                        const std::map<std::string, json>& egressips) {
  GatewayView v;
  v.state.gateway = node;
  std::map<std::string, NamespaceEgress> listed;

  for (const auto& [key, ns] : namespaces) {
    const auto& ann = obj(obj(ns, "metadata"), "annotations");
    if (ann.contains(kPoolAnnotation) || ann.contains(kIpAnnotation)) listed[key].name = key;
  }
  for (const auto& [key, e] : egressips) {
    const auto& st = obj(e, "status");
    if (str(st, "state") != "Assigned") continue;
    const std::string ns = str(st, "namespace");
    const std::string ip_text = str(obj(e, "spec"), "ip");
    auto ip = IpAddress::parse(ip_text);
    if (!ip || !isDnsLabel(ns)) {
      v.warnings.push_back("EgressIP " + key + ": skipped (spec.ip \"" + ip_text +
                           "\", status.namespace \"" + ns + "\")");
      continue;
    }
    auto& entry = listed[ns];
    entry.name = ns;
    if (str(st, "node") != node) continue;
    auto& slot = ip->isV4() ? entry.egress_v4 : entry.egress_v6;
    if (slot) {
      v.warnings.push_back("namespace " + ns + ": the ledger assigns both " + slot->str() +
                           " and " + ip->str() + " on this node; using the lower");
      if (*ip < *slot) slot = *ip;
    } else {
      slot = *ip;
    }
  }
  for (const auto& [key, cached] : pods) {
    auto p = cachedPod(cached);
    if (!p) continue;
    auto it = listed.find(p->ns);
    if (it == listed.end()) continue;
    if (!podOwnsItsAddresses(p->phase, p->host_network)) continue;
    for (const auto& t : p->ips) {
      if (t.empty()) continue;
      if (auto ip = IpAddress::parse(t))
        it->second.pod_ips.push_back(*ip);
      else
        v.warnings.push_back("pod " + key + ": \"" + t + "\" is not an IP address (skipped)");
    }
  }
  for (auto& [name, e] : listed) v.state.namespaces.push_back(std::move(e));
  for (const auto& ip : dropAmbiguousPodIps(v.state))
    v.warnings.push_back("pod address " + ip.str() +
                         " is claimed by pods of more than one namespace: not translated");
  return v;
}

}  // namespace nsegress::kube
