#include "nsegress/common/decode.h"
#include "nsegress/common/json.h"

#include "nsegress/common/desired_state.h"

namespace nsegress {

using nlohmann::json;

namespace {

struct FieldError {
  std::string message;
};

// A string member, or "" (missing fields and wrong types alike).
std::string str(const json& o, const char* key) {
  if (!o.is_object()) return "";
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : "";
}
// A member, or null.
const json& member(const json& o, const char* key) {
  static const json null;
  if (!o.is_object()) return null;
  auto it = o.find(key);
  return it != o.end() ? *it : null;
}
bool has(const json& o, const char* key) {
  return !member(o, key).is_null();
}

// Booleans as JSON has them, or as YAML 1.1 plain scalars (manifests).
bool boolean(const json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (!v.is_string()) return false;
  static const char* kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                "on",   "On",   "ON",   "y",   "Y"};
  const auto s = v.get<std::string>();
  for (const char* t : kTrue)
    if (s == t) return true;
  return false;
}

Labels stringMap(const json& n, const std::string& path) {
  Labels out;
  if (n.is_null()) return out;
  if (!n.is_object()) throw FieldError{path + ": must be a map"};
  for (const auto& [k, v] : n.items()) {
    if (!v.is_string()) throw FieldError{path + "." + k + ": must be a string"};
    out[k] = v.get<std::string>();
  }
  return out;
}

// A field nsegress does not know is an error, never ignored: a misspelt
// selector field must not select everyone. (The CRDs keep unknown fields in
// these objects, so the API server does not prune them before we see them.)
void onlyKnown(const json& o, std::initializer_list<const char*> known, const std::string& path) {
  if (!o.is_object()) return;
  for (const auto& [k, v] : o.items()) {
    bool ok = false;
    for (const char* name : known) ok |= k == name;
    if (ok) continue;
    std::string list;
    for (const char* name : known) list += std::string(list.empty() ? "" : ", ") + name;
    throw FieldError{path + "." + k.substr(0, 64) + ": unknown field (known: " + list + ")"};
  }
}

Selector selector(const json& n, const std::string& path) {
  Selector s;
  if (n.is_null()) return s;
  if (!n.is_object()) throw FieldError{path + ": must be a label selector"};
  onlyKnown(n, {"matchLabels", "matchExpressions"}, path);
  for (const auto& [k, v] : stringMap(member(n, "matchLabels"), path + ".matchLabels"))
    s.requirements.push_back({k, Selector::Requirement::Op::kIn, {v}});
  const json& exprs = member(n, "matchExpressions");
  if (exprs.is_null()) return s;
  if (!exprs.is_array()) throw FieldError{path + ".matchExpressions: must be a list"};
  for (size_t i = 0; i < exprs.size(); ++i) {
    const std::string p = path + ".matchExpressions[" + std::to_string(i) + "]";
    const json& e = exprs[i];
    if (!e.is_object() || str(e, "key").empty()) throw FieldError{p + ".key: missing"};
    onlyKnown(e, {"key", "operator", "values"}, p);
    Selector::Requirement r{str(e, "key"), Selector::Requirement::Op::kIn, {}};
    const std::string op = str(e, "operator");
    if (op == "In")
      r.op = Selector::Requirement::Op::kIn;
    else if (op == "NotIn")
      r.op = Selector::Requirement::Op::kNotIn;
    else if (op == "Exists")
      r.op = Selector::Requirement::Op::kExists;
    else if (op == "DoesNotExist")
      r.op = Selector::Requirement::Op::kDoesNotExist;
    else
      throw FieldError{p + ".operator: \"" + op + "\" is not In, NotIn, Exists or DoesNotExist"};
    const json& values = member(e, "values");
    if (!values.is_null()) {
      if (!values.is_array()) throw FieldError{p + ".values: must be a list"};
      for (const auto& v : values) r.values.push_back(v.is_string() ? v.get<std::string>() : "");
    }
    const bool needs_values =
        r.op == Selector::Requirement::Op::kIn || r.op == Selector::Requirement::Op::kNotIn;
    if (needs_values == r.values.empty())
      throw FieldError{p + ".values: " + (needs_values ? "required for " : "not allowed with ") +
                       op};
    s.requirements.push_back(std::move(r));
  }
  return s;
}

std::vector<AddressRange> ranges(const json& list, const std::string& path, bool required) {
  std::vector<AddressRange> out;
  if (list.is_null() && !required) return out;
  if (!list.is_array() || (required && list.empty()))
    throw FieldError{path + (required ? ": must be a non-empty list" : ": must be a list")};
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string text = list[i].is_string() ? list[i].get<std::string>() : "";
    auto r = parseAddressRange(text);
    if (!r)
      throw FieldError{path + "[" + std::to_string(i) + "]: \"" + text +
                       "\" is not a CIDR, an address range or an address"};
    out.push_back(*r);
  }
  return out;
}

// metadata.name, required; the error names the field.
std::string nameOf(const json& o) {
  const json& meta = member(o, "metadata");
  if (!meta.is_object()) throw FieldError{"metadata: missing"};
  std::string name = str(meta, "name");
  if (name.empty()) throw FieldError{"metadata.name: missing"};
  return name;
}

template <typename F>
auto guarded(F&& f) -> Result<decltype(f())> {
  try {
    return f();
  } catch (const FieldError& e) {
    return makeError(EINVAL, e.message);
  }
}

Pool poolOf(const json& o, std::string name) {
  Pool p;
  p.name = std::move(name);
  try {
    const json& spec = member(o, "spec");
    if (!spec.is_object()) throw FieldError{"spec: missing"};
    onlyKnown(spec,
              {"addresses", "exclude", "namespaceSelector", "nodeSelector", "quarantine",
               "acknowledgeRemoval", "onboarding", "portBlockSize"},
              "spec");
    p.ranges = ranges(member(spec, "addresses"), "spec.addresses", true);
    p.excluded = ranges(member(spec, "exclude"), "spec.exclude", false);
    const json& addrs = member(spec, "addresses");
    for (size_t i = 0; i < p.ranges.size(); ++i) {
      if (auto why = unusableEgress(p.ranges[i]))
        throw FieldError{"spec.addresses[" + std::to_string(i) + "]: \"" +
                         addrs[i].get<std::string>() + "\" contains " + *why +
                         ", which can never be an egress address"};
      // A CIDR's network address (and IPv4 broadcast address) is never
      // handed out, as in every IPAM; a range or single address is used as
      // written. /31, /32 and /127, /128 have none.
      if (auto c = Cidr::parse(addrs[i].get<std::string>())) {
        const bool v4 = c->network().isV4();
        if ((v4 && c->prefix() <= 30) || (!v4 && c->prefix() <= 126))
          p.excluded.push_back({c->network(), c->network()});
        if (v4 && c->prefix() <= 30) p.excluded.push_back({c->last(), c->last()});
      }
    }
    p.namespace_selector = selector(member(spec, "namespaceSelector"), "spec.namespaceSelector");
    p.node_selector = selector(member(spec, "nodeSelector"), "spec.nodeSelector");
    if (has(spec, "quarantine")) {
      const json& q = member(spec, "quarantine");
      const std::string text = q.is_string() ? q.get<std::string>() : dumpJson(q);
      auto d = parseDuration(text);
      if (!d)
        throw FieldError{"spec.quarantine: \"" + text + "\" is not a duration like 168h or 7d"};
      p.quarantine = *d;
    }
    if (has(spec, "acknowledgeRemoval")) {
      // true or false exactly (a boolean from the API; a manifest's YAML
      // scalars arrive as text): yes, 1, on or a typo is refused, never
      // read as "off".
      const json& a = member(spec, "acknowledgeRemoval");
      if (a.is_boolean())
        p.acknowledge_removal = a.get<bool>();
      else if (a.is_string() && (a == "true" || a == "false"))
        p.acknowledge_removal = a == "true";
      else
        throw FieldError{"spec.acknowledgeRemoval: expected true or false, got " +
                         dumpJson(a).substr(0, 32)};
    }
    if (has(spec, "onboarding")) {
      const json& q = member(spec, "onboarding");
      const std::string text = q.is_string() ? q.get<std::string>() : dumpJson(q);
      auto d = parseDuration(text);
      if (!d || *d > Pool::kMaxOnboarding)
        throw FieldError{"spec.onboarding: \"" + text.substr(0, 32) +
                         "\" is not a duration of at most 7d like 10m or 1h"};
      p.onboarding = *d;
    }
    if (has(spec, "portBlockSize")) {
      // An integer (a manifest's YAML scalar arrives as text: digits only).
      const json& b = member(spec, "portBlockSize");
      std::optional<uint64_t> n;
      if (b.is_number_unsigned())
        n = b.get<uint64_t>();
      else if (b.is_string() && !b.get<std::string>().empty() && b.get<std::string>().size() <= 6 &&
               b.get<std::string>().find_first_not_of("0123456789") == std::string::npos)
        n = std::stoull(b.get<std::string>());
      if (!n || *n < Pool::kMinPortBlock || *n > Pool::kMaxPortBlock)
        throw FieldError{"spec.portBlockSize: expected a whole number of ports from " +
                         std::to_string(Pool::kMinPortBlock) + " to " +
                         std::to_string(Pool::kMaxPortBlock) + ", got " +
                         dumpJson(b).substr(0, 32)};
      p.port_block_size = static_cast<uint32_t>(*n);
    }
  } catch (const FieldError& e) {
    p.invalid = e.message;  // kept, marked invalid: its namespaces see why
  }
  return p;
}

Namespace namespaceOf(const json& o) {
  Namespace ns;
  ns.name = nameOf(o);
  if (!isDnsLabel(ns.name))
    throw FieldError{"metadata.name: \"" + ns.name + "\" is not a valid namespace name"};
  const json& meta = member(o, "metadata");
  ns.labels = stringMap(member(meta, "labels"), "metadata.labels");
  ns.annotations = stringMap(member(meta, "annotations"), "metadata.annotations");
  ns.deleting = has(meta, "deletionTimestamp");
  const json& fins = member(meta, "finalizers");
  if (fins.is_array())
    for (const auto& f : fins)
      if (f.is_string()) ns.finalizers.push_back(f.get<std::string>());
  ns.resource_version = str(meta, "resourceVersion");
  ns.uid = str(meta, "uid");
  return ns;
}

Pod podOf(const json& o) {
  std::string name = nameOf(o);
  std::string ns = str(member(o, "metadata"), "namespace");
  const json& spec = member(o, "spec");
  const json& st = member(o, "status");
  std::vector<std::string> ips;
  if (const json& list = member(st, "podIPs"); list.is_array()) {
    for (size_t i = 0; i < list.size(); ++i) {
      if (!member(list[i], "ip").is_string())
        throw FieldError{"status.podIPs[" + std::to_string(i) + "].ip: must be a string"};
      ips.push_back(str(list[i], "ip"));
    }
  } else if (has(st, "podIP")) {
    if (!member(st, "podIP").is_string()) throw FieldError{"status.podIP: must be a string"};
    ips.push_back(str(st, "podIP"));
  }
  auto p = podFrom(ns.empty() ? "default" : ns, std::move(name), str(spec, "nodeName"),
                   str(st, "phase"), boolean(member(spec, "hostNetwork")), ips);
  if (!p) throw FieldError{p.error().message};
  return std::move(*p);
}

Node nodeOf(const json& o) {
  Node n{nameOf(o), stringMap(member(member(o, "metadata"), "labels"), "metadata.labels"), true};
  // Node names become file names (<state-dir>/<node>.json): only what
  // Kubernetes allows (an RFC 1123 subdomain), never a path.
  if (!isDnsSubdomain(n.name))
    throw FieldError{"metadata.name: \"" + n.name.substr(0, 64) + "\" is not a valid node name"};
  if (const json& conds = member(member(o, "status"), "conditions"); conds.is_array())
    for (const auto& c : conds)
      if (str(c, "type") == "Ready") n.ready = str(c, "status") == "True";
  if (const json& addrs = member(member(o, "status"), "addresses"); addrs.is_array())
    for (const auto& a : addrs) {
      if (str(a, "type") != "InternalIP") continue;
      const std::string text = str(a, "address");
      auto ip = IpAddress::parse(text);
      if (!ip)
        throw FieldError{"status.addresses: \"" + text.substr(0, 64) + "\" is not an IP address"};
      auto& slot = ip->isV4() ? n.ipv4 : n.ipv6;
      if (!slot) slot = *ip;
    }
  return n;
}

Seconds timeField(const json& st, const char* key) {
  const std::string s = str(st, key);
  if (s.empty()) return 0;
  auto t = parseRfc3339(s);
  if (!t)
    throw FieldError{std::string("status.") + key + ": \"" + s + "\" is not an RFC 3339 time"};
  return *t;
}

AddressRecord egressIpOf(const json& o) {
  nameOf(o);
  const json& spec = member(o, "spec");
  const std::string ip_text = str(spec, "ip");
  auto ip = IpAddress::parse(ip_text);
  if (!ip) throw FieldError{"spec.ip: \"" + ip_text + "\" is not an IP address"};
  const json& st = member(o, "status");
  AddressRecord r;
  r.ip = *ip;
  r.pool = str(spec, "pool");
  const std::string state = str(st, "state");
  if (state.empty()) {
    r.state = AddressState::kFree;  // created, status not written yet
  } else if (auto s = addressStateFrom(state)) {
    r.state = *s;
  } else {
    throw FieldError{"status.state: \"" + state +
                     "\" is not Assigned, PendingFirewallCleanup, Quarantined or Free"};
  }
  r.ns = str(st, "namespace");
  if (r.state == AddressState::kAssigned && !isDnsLabel(r.ns))
    throw FieldError{"status.namespace: \"" + r.ns + "\" is not a valid namespace name"};
  r.node = str(st, "node");
  // A node name is written into every node's desired state (where it must
  // parse): only what Kubernetes allows.
  if (!r.node.empty() && !isDnsSubdomain(r.node))
    throw FieldError{"status.node: \"" + r.node.substr(0, 64) + "\" is not a valid node name"};
  r.assigned_at = timeField(st, "assignedAt");
  r.released_at = timeField(st, "releasedAt");
  r.quarantine_until = timeField(st, "quarantineUntil");
  r.usable_at = timeField(st, "usableAt");
  r.version = str(member(o, "metadata"), "resourceVersion");
  return r;
}

}  // namespace

std::string describeObject(const json& o) {
  return str(o, "kind") + " " + str(member(o, "metadata"), "name");
}

Result<Object> decodeObject(const json& o) {
  return guarded([&]() -> Object {
    if (!o.is_object()) throw FieldError{"must be a map"};
    const std::string kind = str(o, "kind"), api = str(o, "apiVersion");
    if (kind.empty()) throw FieldError{"kind: missing"};
    if (api.empty()) throw FieldError{"apiVersion: missing"};
    std::string name = nameOf(o);
    if (kind == "EgressPool") {
      if (api != "nsegress.io/v1alpha1")
        throw FieldError{"apiVersion: must be nsegress.io/v1alpha1"};
      return poolOf(o, std::move(name));
    }
    if (kind == "Namespace") return namespaceOf(o);
    if (kind == "Pod") return podOf(o);
    if (kind == "Node") return nodeOf(o);
    return OtherKind{kind};
  });
}

Result<Namespace> decodeNamespace(const json& o) {
  return guarded([&] { return namespaceOf(o); });
}
Result<Pod> decodePod(const json& o) {
  return guarded([&] { return podOf(o); });
}
Result<Node> decodeNode(const json& o) {
  return guarded([&] { return nodeOf(o); });
}
Result<Pool> decodePool(const json& o) {
  return guarded([&] { return poolOf(o, nameOf(o)); });
}
Result<AddressRecord> decodeEgressIP(const json& o) {
  return guarded([&] { return egressIpOf(o); });
}

Result<EgressLease> decodeEgressLease(const json& o) {
  return guarded([&] {
    const std::string name = nameOf(o);
    const json& meta = member(o, "metadata");
    const std::string text = str(member(meta, "annotations"), kEgressLeaseAddress);
    auto ip = IpAddress::parse(text);
    if (!ip)
      throw FieldError{std::string("metadata.annotations.") + kEgressLeaseAddress + ": \"" +
                       text.substr(0, 64) + "\" is not an IP address"};
    if (egressLeaseName(*ip) != name)
      throw FieldError{"metadata.name: \"" + name.substr(0, 64) + "\" does not name " + ip->str()};
    const json& spec = member(o, "spec");
    EgressLease l;
    l.ip = *ip;
    l.owner = str(spec, "holderIdentity");
    if (!isDnsSubdomain(l.owner))
      throw FieldError{"spec.holderIdentity: \"" + l.owner.substr(0, 64) +
                       "\" is not a valid node name"};
    const json& t = member(spec, "leaseTransitions");
    if (!t.is_number_integer() || t.get<int64_t>() < 1)
      throw FieldError{"spec.leaseTransitions: must be an epoch (an integer ≥ 1)"};
    l.epoch = static_cast<uint64_t>(t.get<int64_t>());
    l.version = str(meta, "resourceVersion");
    return l;
  });
}

Result<std::string> decodeLeaseServer(const json& o) {
  return guarded([&]() -> std::string {
    nameOf(o);
    const json& subsets = member(o, "subsets");
    if (subsets.is_null()) return "";
    if (!subsets.is_array()) throw FieldError{"subsets: must be a list"};
    std::string out;
    for (const auto& sub : subsets) {
      const json& addrs = member(sub, "addresses");
      const json& ports = member(sub, "ports");
      if (!addrs.is_array() || !ports.is_array()) continue;
      int port = 0;
      for (const auto& p : ports)
        if (str(p, "name") == "lease" && str(p, "protocol") == "UDP" &&
            member(p, "port").is_number_integer())
          port = member(p, "port").get<int>();
      if (port <= 0 || port > 65535) continue;
      for (const auto& a : addrs) {
        auto ip = IpAddress::parse(str(a, "ip"));
        if (!ip || !ip->isV4()) continue;
        // One leader lists itself alone; several addresses are a
        // hand-over in progress: renew at none until it settles.
        if (!out.empty()) return "";
        out = ip->str() + ":" + std::to_string(port);
      }
    }
    return out;
  });
}

}  // namespace nsegress
