#include "nsegress/controller/manifests.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "nsegress/common/decode.h"
#include "nsegress/common/desired_state.h"

namespace nsegress::controller {

namespace fs = std::filesystem;

namespace {

struct DocError {
  std::string message;
};

constexpr int kMaxDepth = 64;

// A YAML node as the JSON tree the API would send, so both modes share one
// decoder (common/decode.h). Scalars stay strings (the decoder reads the
// booleans it needs from either form); `~`/`null`/empty are null.
nlohmann::json toJson(const YAML::Node& n, int depth = 0) {
  if (depth > kMaxDepth) throw DocError{"nested deeper than " + std::to_string(kMaxDepth)};
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      return n.Scalar();
    case YAML::NodeType::Sequence: {
      auto a = nlohmann::json::array();
      for (const auto& e : n) a.push_back(toJson(e, depth + 1));
      return a;
    }
    case YAML::NodeType::Map: {
      auto o = nlohmann::json::object();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) throw DocError{"a map key is not a string"};
        o[kv.first.Scalar()] = toJson(kv.second, depth + 1);
      }
      return o;
    }
  }
  return nullptr;
}

}  // namespace

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
    nlohmann::json doc;
    try {
      doc = toJson(d);
    } catch (const DocError& e) {
      return makeError(EINVAL, where + ": " + e.message);
    } catch (const YAML::Exception& e) {
      return makeError(EINVAL, where + ": " + e.what());
    }
    auto obj = decodeObject(doc);
    // Once it is known which object this is, messages name it.
    auto text = [](const nlohmann::json& o, const char* k) {
      return o.is_object() && o.contains(k) && o[k].is_string() ? o[k].get<std::string>()
                                                                : std::string();
    };
    if (!text(doc, "kind").empty() && !text(doc, "apiVersion").empty() &&
        !text(doc.is_object() ? doc.value("metadata", nlohmann::json()) : nlohmann::json(), "name")
             .empty())
      where += " (" + describeObject(doc) + ")";
    if (!obj) return makeError(EINVAL, where + ": " + obj.error().message);
    auto dup = [&](bool exists) -> Status {
      if (exists) return makeError(EINVAL, where + ": defined twice");
      return okStatus();
    };
    if (auto* p = std::get_if<Pool>(&*obj)) {
      if (auto r = dup(w.pools.count(p->name)); !r) return r.error();
      p->source = file;
      w.pools[p->name] = std::move(*p);
    } else if (auto* ns = std::get_if<Namespace>(&*obj)) {
      if (auto r = dup(w.namespaces.count(ns->name)); !r) return r.error();
      w.namespaces[ns->name] = std::move(*ns);
    } else if (auto* pod = std::get_if<Pod>(&*obj)) {
      w.pods.push_back(std::move(*pod));
    } else if (auto* node = std::get_if<Node>(&*obj)) {
      if (auto r = dup(w.nodes.count(node->name)); !r) return r.error();
      w.nodes[node->name] = std::move(*node);
    }
    // Other kinds are not ours: ignored, as kubectl apply would leave them to others.
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
