// Standalone mode: the objects come from a directory of Kubernetes-style YAML
// manifests (multi-document, as kubectl takes them).
//
// A file that cannot be read or parsed, or that holds a structurally invalid
// document (no kind, no name...), keeps the objects it had the last time it
// loaded ("last good"): a typo in a manifest must never make namespaces
// disappear (and so release their addresses). A pool whose *spec* is invalid
// is kept as an invalid pool, so the namespaces asking for it get the reason.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "nsegress/common/clock.h"
#include "nsegress/common/file.h"
#include "nsegress/common/objects.h"

namespace nsegress::controller {

struct ManifestError {
  std::string file;
  std::string message;  // names the document and field
};

// Whether the objects a reconcile is given are a complete, sane read of
// their source: the only evidence on which anything may be released.
struct SourceState {
  bool complete = true;
  std::string why;  // when not complete
  // Look again after this long (e.g. a file still being written).
  std::optional<std::chrono::milliseconds> recheck_after;
};

// YAML documents as the JSON trees the API would send, bounded while read
// (documents, values including alias expansions, depth), duplicate keys and
// invalid UTF-8 refused.
struct YamlLimits {
  size_t max_documents = 10'000;
  size_t max_values = 1'000'000;
  size_t max_depth = 64;
};
Result<std::vector<nlohmann::json>> parseYamlDocuments(const std::string& text,
                                                       const YamlLimits& limits = {});

// Parses one file's text into objects. Errors in pool specs are recorded on
// the pool (Pool::invalid); structural errors fail the whole file.
Result<World> parseManifests(const std::string& text, const std::string& file);

struct ManifestOptions {
  size_t max_file_bytes = 8u << 20;  // a larger file is refused (its last good objects kept)
  size_t max_files = 10'000;
  // A file changed less than this ago may be mid-write (rewritten in place):
  // its last good objects are used until it has been quiet this long.
  std::chrono::milliseconds settle{500};
};

class ManifestDirectory {
 public:
  explicit ManifestDirectory(std::string dir, Clock& clock = SystemClock::instance(),
                             ManifestOptions o = {})
      : dir_(std::move(dir)), clock_(clock), o_(o) {}
  // Reads every *.yaml, *.yml and *.json file that changed since the last
  // load (each bounded, refused unless a regular file); unchanged files are
  // not parsed again. Returns the merged world; state() says whether it is a
  // complete read (a directory that cannot be listed, or a file still being
  // written, is not: the last good objects are returned and nothing may be
  // released on them).
  World load();
  const SourceState& state() const { return state_; }
  const std::vector<ManifestError>& errors() const { return errors_; }
  const std::string& dir() const { return dir_; }
  uint64_t parses() const { return parses_; }  // files parsed since start

 private:
  struct File {
    std::optional<FileStamp> stamp;  // of the content last parsed
    bool parsed = false;             // `world` is that content's objects
    std::string error;               // why that content did not parse ("" if it did)
    World world;                     // last good objects
  };
  std::string dir_;
  Clock& clock_;
  ManifestOptions o_;
  std::map<std::string, File> files_;
  World merged_;  // the last merged world (duplicates keep their definition from it)
  SourceState state_;
  std::vector<ManifestError> errors_;
  uint64_t parses_ = 0;
};

}  // namespace nsegress::controller
