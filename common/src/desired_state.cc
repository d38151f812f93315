#include "nsegress/common/desired_state.h"

#include <nlohmann/json.hpp>

#include "nsegress/common/json.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>

namespace nsegress {

using nlohmann::json;

bool isDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return false;
  }
  return s.front() != '-' && s.back() != '-';
}

bool isDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t dot = s.find('.', start);
    const auto part = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (!isDnsLabel(part)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

namespace {

Error fieldError(const std::string& path, const std::string& what) {
  return makeError(EINVAL, path + ": " + what);
}

// A value as the error message shows it, bounded.
std::string quoted(const json& j) {
  std::string s = dumpJson(j);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

Result<IpAddress> parseIp(const json& j, const std::string& path) {
  if (!j.is_string()) return fieldError(path, "must be a string, got " + quoted(j));
  auto a = IpAddress::parse(j.get<std::string>());
  if (!a) return fieldError(path, quoted(j) + " is not an IP address");
  return *a;
}

// "1024-2047": both ends 1..65535, first <= last, digits only.
std::optional<std::pair<uint16_t, uint16_t>> parsePortRange(const std::string& s) {
  const auto dash = s.find('-');
  if (dash == std::string::npos) return std::nullopt;
  auto num = [](std::string_view t) -> std::optional<uint32_t> {
    if (t.empty() || t.size() > 5 || t.find_first_not_of("0123456789") != t.npos)
      return std::nullopt;
    const uint32_t v = static_cast<uint32_t>(std::stoul(std::string(t)));
    if (v < 1 || v > 65535) return std::nullopt;
    return v;
  };
  auto a = num(std::string_view(s).substr(0, dash));
  auto b = num(std::string_view(s).substr(dash + 1));
  if (!a || !b || *a > *b) return std::nullopt;
  return std::pair{static_cast<uint16_t>(*a), static_cast<uint16_t>(*b)};
}

// A namespace's port blocks: each names one of its pods and an egress
// address of the pod's family — one of the namespace's addresses, hosted
// here or (failover) on another node, so not necessarily in egressIPs; a
// block is used only while its address is the pod's egress here. At most
// one block per pod and address, and no two blocks of an address overlap
// (in any namespace).
Status parsePortBlocks(const json& list, const std::string& base, NamespaceEgress& ns,
                       std::map<IpAddress, std::map<uint16_t, uint16_t>>& ranges_of) {
  if (!list.is_array()) return fieldError(base, "must be a list");
  static const std::set<std::string> kBlock = {"egressIP", "podIP", "ports"};
  for (size_t j = 0; j < list.size(); ++j) {
    const std::string p = base + "[" + std::to_string(j) + "]";
    const json& b = list[j];
    if (!b.is_object()) return fieldError(p, "must be an object");
    for (auto& [k, v] : b.items())
      if (!kBlock.count(k)) return fieldError(p + "." + k.substr(0, 64), "unknown field");
    if (!b.contains("egressIP") || !b.contains("podIP") || !b.contains("ports"))
      return fieldError(p, "needs egressIP, podIP and ports");
    PodPortBlock pb;
    auto e = parseIp(b["egressIP"], p + ".egressIP");
    if (!e) return e.error();
    auto pod = parseIp(b["podIP"], p + ".podIP");
    if (!pod) return pod.error();
    pb.egress = *e, pb.pod = *pod;
    if (pb.egress.family() != pb.pod.family())
      return fieldError(p, "the pod and the egress address are of different families");
    if (std::find(ns.pod_ips.begin(), ns.pod_ips.end(), pb.pod) == ns.pod_ips.end())
      return fieldError(p + ".podIP", pb.pod.str() + " is not a pod address of this namespace");
    auto r = b["ports"].is_string() ? parsePortRange(b["ports"].get<std::string>()) : std::nullopt;
    if (!r) return fieldError(p + ".ports", quoted(b["ports"]) + " is not a range like 1024-2047");
    pb.first = r->first, pb.last = r->second;
    if (ns.blockOf(pb.pod, pb.egress))
      return fieldError(p, pb.pod.str() + " has two blocks on " + pb.egress.str());
    auto& taken = ranges_of[pb.egress];
    auto next = taken.lower_bound(pb.first);
    const bool overlaps = (next != taken.end() && next->first <= pb.last) ||
                          (next != taken.begin() && std::prev(next)->second >= pb.first);
    if (overlaps) return fieldError(p + ".ports", "overlaps another block on " + pb.egress.str());
    taken.emplace(pb.first, pb.last);
    ns.port_blocks.push_back(pb);
  }
  return okStatus();
}

}  // namespace

Result<DesiredState> parseDesiredState(std::string_view text) {
  // The document is four levels deep; bound everything before building it.
  auto parsed = parseJson(text, JsonLimits{kMaxDesiredStateBytes, 8, 10'000'000});
  if (!parsed) return makeError(EINVAL, "document: not valid JSON: " + parsed.error().message);
  const json& doc = *parsed;
  if (!doc.is_object()) return fieldError("document", "must be a JSON object");

  static const std::set<std::string> kTop = {"apiVersion", "kind",       "gateway", "generation",
                                             "namespaces", "blockedIPs", "nodes",   "addresses"};
  for (auto& [k, v] : doc.items()) {
    if (!kTop.count(k)) return fieldError(k.substr(0, 64), "unknown field");
  }
  if (!doc.contains("apiVersion") || doc["apiVersion"] != kApiVersion)
    return fieldError("apiVersion", "must be \"" + std::string(kApiVersion) + "\"");
  if (!doc.contains("kind") || doc["kind"] != kDesiredStateKind)
    return fieldError("kind", "must be \"" + std::string(kDesiredStateKind) + "\"");

  DesiredState s;
  if (doc.contains("gateway")) {
    if (!doc["gateway"].is_string()) return fieldError("gateway", "must be a string");
    s.gateway = doc["gateway"].get<std::string>();
  }
  if (doc.contains("generation")) {
    if (!doc["generation"].is_number_unsigned())
      return fieldError("generation", "must be a non-negative integer");
    s.generation = doc["generation"].get<uint64_t>();
  }
  if (!doc.contains("namespaces")) return fieldError("namespaces", "missing");
  const json& nss = doc["namespaces"];
  if (!nss.is_array()) return fieldError("namespaces", "must be a list");

  std::set<std::string> names;
  std::unordered_map<IpAddress, std::string> pod_owner;
  static const std::set<std::string> kNs = {
      "name", "egressIPs", "podIPs", "gatewayV4", "gatewayV6", "portBlocksRequired", "portBlocks"};
  // Per egress address: the port ranges handed out (never two pods' overlap).
  std::map<IpAddress, std::map<uint16_t, uint16_t>> ranges_of;
  for (size_t i = 0; i < nss.size(); ++i) {
    const std::string base = "namespaces[" + std::to_string(i) + "]";
    const json& n = nss[i];
    if (!n.is_object()) return fieldError(base, "must be an object");
    for (auto& [k, v] : n.items()) {
      if (!kNs.count(k)) return fieldError(base + "." + k.substr(0, 64), "unknown field");
    }
    NamespaceEgress ns;
    if (!n.contains("name") || !n["name"].is_string())
      return fieldError(base + ".name", "missing or not a string");
    ns.name = n["name"].get<std::string>();
    if (!isDnsLabel(ns.name))
      return fieldError(base + ".name", quoted(n["name"]) + " is not a valid namespace name");
    if (!names.insert(ns.name).second)
      return fieldError(base + ".name", "namespace \"" + ns.name + "\" listed twice");

    if (n.contains("egressIPs")) {
      const json& e = n["egressIPs"];
      if (!e.is_array()) return fieldError(base + ".egressIPs", "must be a list");
      for (size_t j = 0; j < e.size(); ++j) {
        const std::string p = base + ".egressIPs[" + std::to_string(j) + "]";
        auto ip = parseIp(e[j], p);
        if (!ip) return ip.error();
        auto& slot = ip->isV4() ? ns.egress_v4 : ns.egress_v6;
        if (slot) return fieldError(p, "more than one egress address of the same family");
        slot = *ip;
      }
    }
    if (!n.contains("podIPs")) return fieldError(base + ".podIPs", "missing");
    const json& pods = n["podIPs"];
    if (!pods.is_array()) return fieldError(base + ".podIPs", "must be a list");
    for (size_t j = 0; j < pods.size(); ++j) {
      const std::string p = base + ".podIPs[" + std::to_string(j) + "]";
      auto ip = parseIp(pods[j], p);
      if (!ip) return ip.error();
      auto [it, inserted] = pod_owner.emplace(*ip, ns.name);
      if (!inserted)
        return fieldError(
            p, ip->str() + " is already a pod address of namespace \"" + it->second + "\"");
      ns.pod_ips.push_back(*ip);
    }
    for (auto [key, into] :
         {std::pair{"gatewayV4", &ns.gateway_v4}, {"gatewayV6", &ns.gateway_v6}}) {
      if (!n.contains(key)) continue;
      const json& g = n[key];
      if (!g.is_string() || !isDnsSubdomain(g.get<std::string>()))
        return fieldError(base + "." + key, quoted(g) + " is not a node name");
      *into = g.get<std::string>();
    }
    if (n.contains("portBlocksRequired")) {
      if (!n["portBlocksRequired"].is_boolean())
        return fieldError(base + ".portBlocksRequired", "must be true or false");
      ns.port_blocks_required = n["portBlocksRequired"].get<bool>();
    }
    if (n.contains("portBlocks")) {
      if (auto r = parsePortBlocks(n["portBlocks"], base + ".portBlocks", ns, ranges_of); !r)
        return r.error();
    }
    s.namespaces.push_back(std::move(ns));
  }
  if (doc.contains("blockedIPs")) {
    const json& b = doc["blockedIPs"];
    if (!b.is_array()) return fieldError("blockedIPs", "must be a list");
    for (size_t j = 0; j < b.size(); ++j) {
      const std::string p = "blockedIPs[" + std::to_string(j) + "]";
      auto ip = parseIp(b[j], p);
      if (!ip) return ip.error();
      if (auto it = pod_owner.find(*ip); it != pod_owner.end())
        return fieldError(p,
                          ip->str() + " is also a pod address of namespace \"" + it->second + "\"");
      s.blocked.push_back(*ip);
    }
  }
  if (doc.contains("nodes")) {
    const json& nodes = doc["nodes"];
    if (!nodes.is_array()) return fieldError("nodes", "must be a list");
    static const std::set<std::string> kNode = {"name", "ipv4", "ipv6", "podIPs"};
    std::set<std::string> node_names;
    std::unordered_map<IpAddress, std::string> pod_node;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const std::string base = "nodes[" + std::to_string(i) + "]";
      const json& n = nodes[i];
      if (!n.is_object()) return fieldError(base, "must be an object");
      for (auto& [k, v] : n.items())
        if (!kNode.count(k)) return fieldError(base + "." + k.substr(0, 64), "unknown field");
      NodeEntry e;
      if (!n.contains("name") || !n["name"].is_string() ||
          !isDnsSubdomain(n["name"].get<std::string>()))
        return fieldError(base + ".name", "missing or not a valid node name");
      e.name = n["name"].get<std::string>();
      if (!node_names.insert(e.name).second)
        return fieldError(base + ".name", "node \"" + e.name + "\" listed twice");
      for (auto [key, fam, into] :
           {std::tuple{"ipv4", Family::V4, &e.ipv4}, std::tuple{"ipv6", Family::V6, &e.ipv6}}) {
        if (!n.contains(key)) continue;
        auto ip = parseIp(n[key], base + "." + key);
        if (!ip) return ip.error();
        if (ip->family() != fam)
          return fieldError(base + "." + key, ip->str() + " is not an " + key + " address");
        *into = *ip;
      }
      if (n.contains("podIPs")) {
        const json& pods = n["podIPs"];
        if (!pods.is_array()) return fieldError(base + ".podIPs", "must be a list");
        for (size_t j = 0; j < pods.size(); ++j) {
          const std::string p = base + ".podIPs[" + std::to_string(j) + "]";
          auto ip = parseIp(pods[j], p);
          if (!ip) return ip.error();
          // A pod lives on one node, and is a pod of a listed namespace.
          if (!pod_owner.count(*ip))
            return fieldError(p, ip->str() + " is not a pod address of any namespace listed");
          auto [it, inserted] = pod_node.emplace(*ip, e.name);
          if (!inserted)
            return fieldError(p, ip->str() + " is already a pod on node \"" + it->second + "\"");
          e.pod_ips.push_back(*ip);
        }
      }
      s.nodes.push_back(std::move(e));
    }
  }
  if (doc.contains("addresses")) {
    const json& as = doc["addresses"];
    if (!as.is_array()) return fieldError("addresses", "must be a list");
    static const std::set<std::string> kRole = {"ip", "namespace", "owner", "standby", "epoch"};
    std::set<IpAddress> seen;
    for (size_t i = 0; i < as.size(); ++i) {
      const std::string base = "addresses[" + std::to_string(i) + "]";
      const json& a = as[i];
      if (!a.is_object()) return fieldError(base, "must be an object");
      for (auto& [k, v] : a.items())
        if (!kRole.count(k)) return fieldError(base + "." + k.substr(0, 64), "unknown field");
      AddressRole r;
      auto ip = parseIp(a.contains("ip") ? a["ip"] : json(), base + ".ip");
      if (!ip) return ip.error();
      r.ip = *ip;
      if (!seen.insert(r.ip).second) return fieldError(base + ".ip", ip->str() + " listed twice");
      if (!a.contains("namespace") || !a["namespace"].is_string() ||
          !names.count(a["namespace"].get<std::string>()))
        return fieldError(base + ".namespace", "missing or not a namespace listed");
      r.ns = a["namespace"].get<std::string>();
      for (auto [key, into] : {std::pair{"owner", &r.owner}, {"standby", &r.standby}}) {
        if (!a.contains(key)) continue;
        const json& g = a[key];
        if (!g.is_string() || !isDnsSubdomain(g.get<std::string>()))
          return fieldError(base + "." + key, quoted(g) + " is not a node name");
        *into = g.get<std::string>();
      }
      if (a.contains("epoch")) {
        if (!a["epoch"].is_number_unsigned())
          return fieldError(base + ".epoch", "must be a non-negative integer");
        r.epoch = a["epoch"].get<uint64_t>();
      }
      s.addresses.push_back(std::move(r));
    }
  }
  return s;
}

const NodeEntry* DesiredState::node(std::string_view name) const {
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

const NodeEntry* DesiredState::self() const {
  return node(gateway);
}

std::vector<IpAddress> dropAmbiguousPodIps(DesiredState& s) {
  std::map<IpAddress, const std::string*> owner;
  std::set<IpAddress> ambiguous;
  for (const auto& ns : s.namespaces)
    for (const auto& ip : ns.pod_ips) {
      auto [it, inserted] = owner.emplace(ip, &ns.name);
      if (!inserted && *it->second != ns.name) ambiguous.insert(ip);
    }
  for (auto& ns : s.namespaces) {
    std::set<IpAddress> seen;
    std::erase_if(ns.pod_ips, [&](const IpAddress& ip) {
      return ambiguous.count(ip) || !seen.insert(ip).second;
    });
    std::erase_if(ns.port_blocks, [&](const PodPortBlock& b) { return ambiguous.count(b.pod); });
  }
  for (auto& n : s.nodes)
    std::erase_if(n.pod_ips, [&](const IpAddress& ip) { return ambiguous.count(ip); });
  std::set<IpAddress> blocked(s.blocked.begin(), s.blocked.end());
  blocked.insert(ambiguous.begin(), ambiguous.end());
  s.blocked.assign(blocked.begin(), blocked.end());
  return {ambiguous.begin(), ambiguous.end()};
}

std::string serializeDesiredState(const DesiredState& s) {
  json doc;
  doc["apiVersion"] = kApiVersion;
  doc["kind"] = kDesiredStateKind;
  doc["gateway"] = s.gateway;
  doc["generation"] = s.generation;
  json nss = json::array();
  for (const auto& ns : s.namespaces) {
    json n;
    n["name"] = ns.name;
    json e = json::array();
    if (ns.egress_v4) e.push_back(ns.egress_v4->str());
    if (ns.egress_v6) e.push_back(ns.egress_v6->str());
    n["egressIPs"] = e;
    json p = json::array();
    for (const auto& ip : ns.pod_ips) p.push_back(ip.str());
    n["podIPs"] = p;
    if (!ns.gateway_v4.empty()) n["gatewayV4"] = ns.gateway_v4;
    if (!ns.gateway_v6.empty()) n["gatewayV6"] = ns.gateway_v6;
    if (ns.port_blocks_required) n["portBlocksRequired"] = true;
    if (!ns.port_blocks.empty()) {
      json b = json::array();
      for (const auto& pb : ns.port_blocks)
        b.push_back({{"egressIP", pb.egress.str()},
                     {"podIP", pb.pod.str()},
                     {"ports", std::to_string(pb.first) + "-" + std::to_string(pb.last)}});
      n["portBlocks"] = b;
    }
    nss.push_back(n);
  }
  doc["namespaces"] = nss;
  if (!s.blocked.empty()) {
    json b = json::array();
    for (const auto& ip : s.blocked) b.push_back(ip.str());
    doc["blockedIPs"] = b;
  }
  if (!s.nodes.empty()) {
    json nodes = json::array();
    for (const auto& n : s.nodes) {
      json e;
      e["name"] = n.name;
      if (n.ipv4) e["ipv4"] = n.ipv4->str();
      if (n.ipv6) e["ipv6"] = n.ipv6->str();
      json p = json::array();
      for (const auto& ip : n.pod_ips) p.push_back(ip.str());
      e["podIPs"] = p;
      nodes.push_back(e);
    }
    doc["nodes"] = nodes;
  }
  if (!s.addresses.empty()) {
    json as = json::array();
    for (const auto& r : s.addresses) {
      json a;
      a["ip"] = r.ip.str();
      a["namespace"] = r.ns;
      if (!r.owner.empty()) a["owner"] = r.owner;
      if (!r.standby.empty()) a["standby"] = r.standby;
      a["epoch"] = r.epoch;
      as.push_back(a);
    }
    doc["addresses"] = as;
  }
  return dumpJson(doc, 2) + "\n";
}

}  // namespace nsegress
