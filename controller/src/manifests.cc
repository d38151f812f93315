#include "nsegress/controller/manifests.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "nsegress/common/decode.h"
#include "nsegress/common/desired_state.h"
#include "nsegress/common/file.h"
#include "nsegress/common/json.h"

namespace nsegress::controller {

namespace fs = std::filesystem;

namespace {

struct DocError {
  std::string message;
};

// Reads YAML documents through yaml-cpp's event parser into the JSON trees
// the API would send, so both modes share one decoder (common/decode.h).
// Hostile input is bounded while it is read, before anything is built:
// documents, values (alias expansions included, so a billion laughs stops
// early), depth; a map key must be a string and appear once; scalars must be
// UTF-8. (yaml-cpp's LoadAll loops forever, allocating, on inputs such as
// ","; its event parser yields endless empty documents instead, which the
// document bound stops.) Scalars stay strings (the decoder reads the
// booleans it needs from either form); `~`, `null` and empty are null.
class TreeBuilder : public YAML::EventHandler {
 public:
  explicit TreeBuilder(const YamlLimits& l) : l_(l) {}
  std::vector<nlohmann::json> docs;

  void OnDocumentStart(const YAML::Mark&) override {
    if (docs.size() >= l_.max_documents)
      throw DocError{"more than " + std::to_string(l_.max_documents) + " documents"};
    docs.emplace_back(nullptr);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t a) override { value(m, nullptr, a, 1); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t a) override {
    auto it = anchors_.find(a);
    if (it == anchors_.end()) throw DocError{at(m) + "unknown alias"};
    value(m, it->second.first, 0, it->second.second);
  }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                const std::string& v) override {
    if (!validUtf8(v)) throw DocError{at(m) + "a value is not valid UTF-8"};
    value(m, v, a, 1);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                       YAML::EmitterStyle::value) override {
    open(m, nlohmann::json::array(), a);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t a,
                  YAML::EmitterStyle::value) override {
    open(m, nlohmann::json::object(), a);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    nlohmann::json* node;
    YAML::anchor_t anchor;
    size_t values_at_start;
    std::optional<std::string> key;  // maps: the key waiting for its value
  };
  static std::string at(const YAML::Mark& m) { return "line " + std::to_string(m.line + 1) + ": "; }
  void charge(const YAML::Mark& m, size_t n) {
    values_ += n;
    if (values_ > l_.max_values)
      throw DocError{at(m) + "more than " + std::to_string(l_.max_values) +
                     " values (aliases included)"};
  }
  // Where the next value goes; nullptr when it is a map key.
  nlohmann::json* slot(const YAML::Mark& m, bool is_scalar, const nlohmann::json* scalar) {
    if (stack_.empty()) return &docs.back();
    Frame& f = stack_.back();
    if (f.node->is_array()) {
      f.node->push_back(nullptr);
      return &f.node->back();
    }
    if (!f.key) {
      if (!is_scalar || !scalar->is_string()) throw DocError{at(m) + "a map key is not a string"};
      const std::string& k = scalar->get_ref<const std::string&>();
      if (f.node->contains(k)) throw DocError{at(m) + "duplicate key \"" + k.substr(0, 64) + "\""};
      f.key = k;
      return nullptr;
    }
    nlohmann::json* s = &(*f.node)[*f.key];
    f.key.reset();
    return s;
  }
  void value(const YAML::Mark& m, nlohmann::json v, YAML::anchor_t a, size_t weight) {
    charge(m, weight);
    nlohmann::json* s = slot(m, true, &v);
    if (!s) return;  // it was a key
    if (a) anchors_[a] = {v, weight};
    *s = std::move(v);
  }
  void open(const YAML::Mark& m, nlohmann::json v, YAML::anchor_t a) {
    charge(m, 1);
    if (stack_.size() >= l_.max_depth)
      throw DocError{at(m) + "nested deeper than " + std::to_string(l_.max_depth)};
    nlohmann::json* s = slot(m, false, nullptr);
    *s = std::move(v);
    stack_.push_back(Frame{s, a, values_, std::nullopt});
  }
  void close() {
    Frame f = stack_.back();
    stack_.pop_back();
    if (f.anchor) anchors_[f.anchor] = {*f.node, values_ - f.values_at_start + 1};
  }

  const YamlLimits& l_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, std::pair<nlohmann::json, size_t>> anchors_;  // value, its weight
  size_t values_ = 0;
};

}  // namespace

Result<std::vector<nlohmann::json>> parseYamlDocuments(const std::string& text,
                                                       const YamlLimits& limits) {
  std::istringstream in(text);
  TreeBuilder b(limits);
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(b)) {
    }
  } catch (const DocError& e) {
    return makeError(EINVAL, e.message);
  } catch (const YAML::Exception& e) {
    return makeError(EINVAL, std::string("not valid YAML: ") + e.what());
  } catch (const std::exception& e) {
    return makeError(EINVAL, std::string("not valid YAML: ") + e.what());
  }
  return std::move(b.docs);
}

Result<World> parseManifests(const std::string& text, const std::string& file) {
  auto docs = parseYamlDocuments(text);
  if (!docs) return makeError(EINVAL, file + ": " + docs.error().message);
  World w;
  for (size_t i = 0; i < docs->size(); ++i) {
    const nlohmann::json& doc = (*docs)[i];
    if (doc.is_null()) continue;  // empty document between "---"
    std::string where = file + ": document " + std::to_string(i + 1);
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
  state_ = SourceState{};
  std::vector<fs::path> files;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const auto& e = *it;
    const auto ext = e.path().extension().string();
    if ((ext == ".yaml" || ext == ".yml" || ext == ".json") &&
        e.path().filename().string()[0] != '.')
      files.push_back(e.path());
    if (files.size() > o_.max_files) break;
  }
  if (ec) {
    // Positive evidence only: a directory that cannot be listed (missing,
    // unreadable) says nothing about what exists. Everything is held.
    state_ = {false, "manifest directory " + dir_ + " cannot be listed: " + ec.message(), {}};
    errors_.push_back({dir_, state_.why + " (holding everything)"});
    return merged_;
  }
  if (files.size() > o_.max_files) {
    state_ = {
        false, "more than " + std::to_string(o_.max_files) + " manifest files in " + dir_, {}};
    errors_.push_back({dir_, state_.why + " (holding everything)"});
    return merged_;
  }
  // An empty directory is a complete read; releasing everything on it needs
  // an operator's confirmation (Controller's release guard).
  std::sort(files.begin(), files.end());

  const auto now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.wallNow().time_since_epoch())
          .count();
  std::set<std::string> present;
  for (const auto& f : files) {
    const std::string name = f.string();
    present.insert(name);
    auto& cached = files_[name];
    // A file with no good version yet (at start, or new) that cannot be
    // read or parsed says nothing about what it defines: absent, its
    // namespaces would be released. The read is incomplete until it loads.
    // Reports why the file is refused.
    auto refuse = [&](const std::string& why) {
      if (!cached.parsed && state_.complete)
        state_ = {false, name + " has no good version yet (" + why.substr(0, 200) + ")", {}};
      errors_.push_back({name, why + (cached.parsed ? " (keeping the file's last good objects)"
                                                    : " (holding everything until it loads)")});
    };
    auto content = readFileBounded(name, o_.max_file_bytes);
    if (!content) {
      refuse(content.error().message);
      continue;
    }
    const auto age = std::chrono::nanoseconds(now_ns - content->stamp.mtime_ns);
    // Unchanged: not parsed again. (A file changed in the last seconds is
    // parsed anyway: a rewrite within one timestamp tick keeps size and mtime.)
    if (cached.stamp && *cached.stamp == content->stamp && age > std::chrono::seconds(2)) {
      if (!cached.error.empty()) refuse(cached.error);  // still the content that failed
      continue;
    }
    // A file modified within the settle window may still be being written
    // in place: its last good objects stay until it has been quiet that long.
    if (o_.settle.count() > 0 && age < o_.settle) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(o_.settle - age) +
                        std::chrono::milliseconds(1);
      state_ = {false, name + " is being written", left};
      continue;
    }
    ++parses_;
    cached.stamp = content->stamp;
    auto w = parseManifests(content->text, name);
    if (!w) {
      cached.error = w.error().message;
      refuse(cached.error);
      continue;
    }
    cached.error.clear();
    cached.world = std::move(*w);
    cached.parsed = true;
  }
  // A file that is gone takes its objects with it (the directory was listed).
  for (auto f = files_.begin(); f != files_.end();)
    f = present.count(f->first) ? std::next(f) : files_.erase(f);

  // Merge. An object defined in two files is refused in both: it keeps the
  // definition it had before the duplicate appeared (or stays absent if it
  // is new), so a second file never moves a namespace.
  World merged;
  std::map<std::string, std::string> seen_pool, seen_ns, seen_node, seen_pod;
  std::set<std::string> dup_pool, dup_ns, dup_node, dup_pod;
  for (const auto& entry : files_) {
    const std::string& file = entry.first;  // (a named variable: lambdas capture it)
    const File& f = entry.second;
    auto note = [&](std::map<std::string, std::string>& seen, std::set<std::string>& dup,
                    const std::string& key, const char* kind) {
      auto [i, first] = seen.emplace(key, file);
      if (!first) {
        dup.insert(key);
        errors_.push_back({file, file + ": " + kind + " " + key + " is also defined in " +
                                     i->second + "; both refused, its previous definition kept"});
      }
    };
    for (const auto& [k, v] : f.world.pools) note(seen_pool, dup_pool, k, "EgressPool");
    for (const auto& [k, v] : f.world.namespaces) note(seen_ns, dup_ns, k, "Namespace");
    for (const auto& [k, v] : f.world.nodes) note(seen_node, dup_node, k, "Node");
    for (const auto& p : f.world.pods) note(seen_pod, dup_pod, p.ns + "/" + p.name, "Pod");
  }
  for (const auto& [file, f] : files_) {
    for (const auto& [k, v] : f.world.pools)
      if (!dup_pool.count(k)) merged.pools.emplace(k, v);
    for (const auto& [k, v] : f.world.namespaces)
      if (!dup_ns.count(k)) merged.namespaces.emplace(k, v);
    for (const auto& [k, v] : f.world.nodes)
      if (!dup_node.count(k)) merged.nodes.emplace(k, v);
    for (const auto& p : f.world.pods)
      if (!dup_pod.count(p.ns + "/" + p.name)) merged.pods.push_back(p);
  }
  for (const auto& k : dup_pool)
    if (auto i = merged_.pools.find(k); i != merged_.pools.end())
      merged.pools.emplace(k, i->second);
  for (const auto& k : dup_ns)
    if (auto i = merged_.namespaces.find(k); i != merged_.namespaces.end())
      merged.namespaces.emplace(k, i->second);
  for (const auto& k : dup_node)
    if (auto i = merged_.nodes.find(k); i != merged_.nodes.end())
      merged.nodes.emplace(k, i->second);
  for (const auto& p : merged_.pods)
    if (dup_pod.count(p.ns + "/" + p.name)) merged.pods.push_back(p);
  // A duplicate with no earlier definition (at start, or new in two files at
  // once): what it means is unknown, and absent would release what it holds.
  // Nothing may be released until one definition is removed.
  auto unknown = [&](const std::set<std::string>& dup, const auto& kept, const char* kind) {
    for (const auto& k : dup)
      if (!kept.count(k) && state_.complete)
        state_ = {
            false,
            std::string(kind) + " " + k + " is defined in two files and has no earlier definition",
            {}};
  };
  unknown(dup_pool, merged.pools, "EgressPool");
  unknown(dup_ns, merged.namespaces, "Namespace");
  unknown(dup_node, merged.nodes, "Node");
  std::set<std::string> kept_pods;
  for (const auto& p : merged.pods) kept_pods.insert(p.ns + "/" + p.name);
  unknown(dup_pod, kept_pods, "Pod");
  markOverlappingPools(merged.pools);
  for (const auto& [name, p] : merged.pools)
    if (p.invalid)
      errors_.push_back({p.source, p.source + ": EgressPool " + name + ": " + *p.invalid});
  merged_ = merged;
  return merged;
}

}  // namespace nsegress::controller
