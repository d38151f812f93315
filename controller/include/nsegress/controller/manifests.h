// Standalone mode: the objects come from a directory of Kubernetes-style YAML
// manifests (multi-document, as kubectl takes them).
//
// A file that cannot be read or parsed, or that holds a structurally invalid
// document (no kind, no name...), keeps the objects it had the last time it
// loaded ("last good"): a typo in a manifest must never make namespaces
// disappear (and so release their addresses). A pool whose *spec* is invalid
// is kept as an invalid pool, so the namespaces asking for it get the reason.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "nsegress/common/objects.h"

namespace nsegress::controller {

struct ManifestError {
  std::string file;
  std::string message;  // names the document and field
};

// Parses one file's text into objects. Errors in pool specs are recorded on
// the pool (Pool::invalid); structural errors fail the whole file.
Result<World> parseManifests(const std::string& text, const std::string& file);

class ManifestDirectory {
 public:
  explicit ManifestDirectory(std::string dir) : dir_(std::move(dir)) {}
  // Re-reads every *.yaml, *.yml and *.json file. Returns the merged world.
  World load();
  const std::vector<ManifestError>& errors() const { return errors_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::map<std::string, World> last_good_;  // per file
  std::vector<ManifestError> errors_;
};

}  // namespace nsegress::controller
