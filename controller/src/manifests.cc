#include "nsegress/controller/manifests.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "nsegress/common/desired_state.h"

namespace nsegress::controller {

namespace fs = std::filesystem;

std::optional<Seconds> parseDuration(const std::string& s) {
  if (s.empty()) return std::nullopt;
  Seconds total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i || j == s.size()) return std::nullopt;
    int64_t n = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, n);
    if (ec != std::errc() || n > 100000000) return std::nullopt;
    int64_t unit = 0;
    switch (s[j]) {
      case 'd':
        unit = 86400;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'm':
        unit = 60;
        break;
      case 's':
        unit = 1;
        break;
      default:
        return std::nullopt;
    }
    total += n * unit;
    i = j + 1;
  }
  return total;
}

std::optional<AddressRange> parseAddressRange(const std::string& s) {
  if (s.find('/') != std::string::npos) {
    auto c = Cidr::parse(s);
    if (!c) return std::nullopt;
    if (!c->network().isV4() && c->prefix() < 64) return std::nullopt;  // bounded IPv6 pools
    return AddressRange{c->network(), c->last()};
  }
  auto dash = s.find('-');
  if (dash != std::string::npos) {
    auto a = IpAddress::parse(s.substr(0, dash)), b = IpAddress::parse(s.substr(dash + 1));
    if (!a || !b || a->family() != b->family() || *b < *a) return std::nullopt;
    return AddressRange{*a, *b};
  }
  auto a = IpAddress::parse(s);
  if (!a) return std::nullopt;
  return AddressRange{*a, *a};
}

namespace {

struct DocError {
  std::string message;
};

std::string str(const YAML::Node& n) {
  return n && n.IsScalar() ? n.Scalar() : std::string();
}

// n[key] that is safe on missing nodes and non-maps (yaml-cpp throws on
// indexing a missing node).
YAML::Node child(const YAML::Node& n, const char* key) {
  if (!n || !n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  return n[key];
}

Labels stringMap(const YAML::Node& n, const std::string& path) {
  Labels out;
  if (!n) return out;
  if (!n.IsMap()) throw DocError{path + ": must be a map"};
  for (const auto& kv : n) {
    if (!kv.second.IsScalar())
      throw DocError{path + "." + kv.first.Scalar() + ": must be a string"};
    out[kv.first.Scalar()] = kv.second.Scalar();
  }
  return out;
}

Selector selector(const YAML::Node& n, const std::string& path) {
  Selector s;
  if (!n || n.IsNull()) return s;
  if (!n.IsMap()) throw DocError{path + ": must be a label selector"};
  for (const auto& [k, v] : stringMap(n["matchLabels"], path + ".matchLabels"))
    s.requirements.push_back({k, Selector::Requirement::Op::kIn, {v}});
  const auto& exprs = n["matchExpressions"];
  if (exprs) {
    if (!exprs.IsSequence()) throw DocError{path + ".matchExpressions: must be a list"};
    for (size_t i = 0; i < exprs.size(); ++i) {
      const std::string p = path + ".matchExpressions[" + std::to_string(i) + "]";
      const auto& e = exprs[i];
      if (!e.IsMap() || str(e["key"]).empty()) throw DocError{p + ".key: missing"};
      Selector::Requirement r{str(e["key"]), Selector::Requirement::Op::kIn, {}};
      const std::string op = str(e["operator"]);
      if (op == "In")
        r.op = Selector::Requirement::Op::kIn;
      else if (op == "NotIn")
        r.op = Selector::Requirement::Op::kNotIn;
      else if (op == "Exists")
        r.op = Selector::Requirement::Op::kExists;
      else if (op == "DoesNotExist")
        r.op = Selector::Requirement::Op::kDoesNotExist;
      else
        throw DocError{p + ".operator: \"" + op + "\" is not In, NotIn, Exists or DoesNotExist"};
      if (e["values"]) {
        if (!e["values"].IsSequence()) throw DocError{p + ".values: must be a list"};
        for (const auto& v : e["values"]) r.values.push_back(str(v));
      }
      const bool needs_values =
          r.op == Selector::Requirement::Op::kIn || r.op == Selector::Requirement::Op::kNotIn;
      if (needs_values == r.values.empty())
        throw DocError{p + ".values: " + (needs_values ? "required for " : "not allowed with ") +
                       op};
      s.requirements.push_back(std::move(r));
    }
  }
  return s;
}

// Pool spec errors do not fail the file: the pool is kept, marked invalid.
Pool pool(const YAML::Node& doc, const std::string& name, const std::string& file) {
  Pool p;
  p.name = name;
  p.source = file;
  try {
    const auto& spec = doc["spec"];
    if (!spec || !spec.IsMap()) throw DocError{"spec: missing"};
    const auto& addrs = spec["addresses"];
    if (!addrs || !addrs.IsSequence() || addrs.size() == 0)
      throw DocError{"spec.addresses: must be a non-empty list"};
    for (size_t i = 0; i < addrs.size(); ++i) {
      auto r = parseAddressRange(str(addrs[i]));
      if (!r)
        throw DocError{"spec.addresses[" + std::to_string(i) + "]: \"" + str(addrs[i]) +
                       "\" is not a CIDR, an address range or an address"};
      p.ranges.push_back(*r);
    }
    if (const auto& ex = spec["exclude"]) {
      if (!ex.IsSequence()) throw DocError{"spec.exclude: must be a list"};
      for (size_t i = 0; i < ex.size(); ++i) {
        auto r = parseAddressRange(str(ex[i]));
        if (!r)
          throw DocError{"spec.exclude[" + std::to_string(i) + "]: \"" + str(ex[i]) +
                         "\" is not a CIDR, an address range or an address"};
        p.excluded.push_back(*r);
      }
    }
    p.namespace_selector = selector(spec["namespaceSelector"], "spec.namespaceSelector");
    p.node_selector = selector(spec["nodeSelector"], "spec.nodeSelector");
    if (const auto& q = spec["quarantine"]) {
      auto d = parseDuration(str(q));
      if (!d)
        throw DocError{"spec.quarantine: \"" + str(q) + "\" is not a duration like 168h or 7d"};
      p.quarantine = *d;
    }
  } catch (const DocError& e) {
    p.invalid = e.message;
  } catch (const YAML::Exception& e) {
    p.invalid = std::string("spec: ") + e.what();
  }
  return p;
}

}  // namespace

Result<Pod> podFrom(std::string ns, std::string name, std::string node, std::string_view phase,
                    bool host_network, const std::vector<std::string>& ips) {
  Pod p{std::move(ns), std::move(name), std::move(node), {}};
  if (!podOwnsItsAddresses(phase, host_network)) return p;  // exists; the addresses are not its
  for (size_t j = 0; j < ips.size(); ++j) {
    auto a = IpAddress::parse(ips[j]);
    if (!a)
      return makeError(EINVAL, "status.podIPs[" + std::to_string(j) + "]: \"" + ips[j] +
                                   "\" is not an IP address");
    p.ips.push_back(*a);
  }
  return p;
}

Result<World> parseManifests(const std::string& text, const std::string& file) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return makeError(EINVAL, file + ": not valid YAML: " + e.what());
  }
  World w;
  for (size_t i = 0; i < docs.size(); ++i) {
    const auto& d = docs[i];
    if (!d || d.IsNull()) continue;  // empty document between "---"
    std::string where = file + ": document " + std::to_string(i + 1);
    try {
      if (!d.IsMap()) throw DocError{"must be a map"};
      const std::string kind = str(d["kind"]), api = str(d["apiVersion"]);
      if (kind.empty()) throw DocError{"kind: missing"};
      if (api.empty()) throw DocError{"apiVersion: missing"};
      const auto& meta = d["metadata"];
      if (!meta || !meta.IsMap()) throw DocError{"metadata: missing"};
      const std::string name = str(meta["name"]);
      if (name.empty()) throw DocError{"metadata.name: missing"};
      where += " (" + kind + " " + name + ")";
      auto dup = [&](bool exists) {
        if (exists) throw DocError{"defined twice"};
      };
      if (kind == "EgressPool") {
        if (api != "nsegress.io/v1alpha1")
          throw DocError{"apiVersion: must be nsegress.io/v1alpha1"};
        dup(w.pools.count(name));
        w.pools[name] = pool(d, name, file);
      } else if (kind == "Namespace") {
        if (!isDnsLabel(name))
          throw DocError{"metadata.name: \"" + name + "\" is not a valid namespace name"};
        dup(w.namespaces.count(name));
        Namespace ns{name, stringMap(meta["labels"], "metadata.labels"),
                     stringMap(meta["annotations"], "metadata.annotations")};
        w.namespaces[name] = std::move(ns);
      } else if (kind == "Pod") {
        std::string ns = str(meta["namespace"]);
        const auto spec = child(d, "spec");
        const auto st = child(d, "status");
        const auto host_net = child(spec, "hostNetwork");
        std::vector<std::string> ips;
        if (auto list = child(st, "podIPs"); list && list.IsSequence())
          for (const auto& e : list) ips.push_back(str(child(e, "ip")));
        else if (auto one = child(st, "podIP"))
          ips.push_back(str(one));
        auto p = podFrom(ns.empty() ? "default" : ns, name, str(child(spec, "nodeName")),
                         str(child(st, "phase")), host_net && host_net.as<bool>(false), ips);
        if (!p) throw DocError{p.error().message};
        w.pods.push_back(std::move(*p));
      } else if (kind == "Node") {
        Node n{name, stringMap(meta["labels"], "metadata.labels"), true};
        if (auto conds = child(child(d, "status"), "conditions"); conds && conds.IsSequence())
          for (const auto& c : conds)
            if (str(child(c, "type")) == "Ready") n.ready = str(child(c, "status")) == "True";
        dup(w.nodes.count(name));
        w.nodes[name] = std::move(n);
      }
      // Other kinds are not ours: ignored, as kubectl apply would leave them to others.
    } catch (const DocError& e) {
      return makeError(EINVAL, where + ": " + e.message);
    } catch (const YAML::Exception& e) {
      return makeError(EINVAL, where + ": " + e.what());
    }
  }
  return w;
}

World ManifestDirectory::load() {
  errors_.clear();
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const auto ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json") &&
        e.path().filename().string()[0] != '.')
      files.push_back(e.path());
  }
  if (ec)
    errors_.push_back(
        {dir_, "cannot list directory: " + ec.message() + " (keeping last good objects)"});
  std::sort(files.begin(), files.end());

  std::set<std::string> present;
  for (const auto& f : files) {
    const std::string name = f.string();
    present.insert(name);
    std::ifstream in(f);
    if (!in) {
      errors_.push_back({name, name + ": cannot read (keeping its last good objects)"});
      continue;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto w = parseManifests(ss.str(), name);
    if (!w) {
      errors_.push_back({name, w.error().message + " (keeping the file's last good objects)"});
      continue;
    }
    last_good_[name] = std::move(*w);
  }
  // A file that is gone (or the directory is unreadable) — its objects go too,
  // unless the directory itself could not be listed.
  if (!ec) {
    for (auto it = last_good_.begin(); it != last_good_.end();)
      it = present.count(it->first) ? std::next(it) : last_good_.erase(it);
  }

  World merged;
  for (const auto& [file, w] : last_good_) {
    auto merge = [&](auto& into, const auto& from, const char* kind) {
      for (const auto& [k, v] : from) {
        if (!into.emplace(k, v).second)
          errors_.push_back({file, file + ": " + kind + " " + k +
                                       " is also defined in another file; ignored here"});
      }
    };
    merge(merged.pools, w.pools, "EgressPool");
    merge(merged.namespaces, w.namespaces, "Namespace");
    merge(merged.nodes, w.nodes, "Node");
    merged.pods.insert(merged.pods.end(), w.pods.begin(), w.pods.end());
  }
  for (const auto& [name, p] : merged.pools)
    if (p.invalid)
      errors_.push_back({p.source, p.source + ": EgressPool " + name + ": " + *p.invalid});
  return merged;
}

}  // namespace nsegress::controller
