// Where the desired state comes from: a JSON file (written by the standalone
// controller or by hand), or the Kubernetes API (kube_source.h).
#pragma once

#include <cstdint>
#include <string>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/fd.h"
#include "nsegress/common/file.h"

namespace nsegress::gateway {

// How a source is doing, for metrics (a file source is always "synced").
struct SourceHealth {
  bool synced =
      true;  // a current view (Kubernetes: every informer listed, and its last request succeeded)
  uint64_t errors = 0;    // failed lists/watches so far
  uint64_t relists = 0;   // relists after 410 Gone
  uint64_t warnings = 0;  // objects skipped or ambiguous in the current view
};

class DesiredStateSource {
 public:
  virtual ~DesiredStateSource() = default;
  virtual SourceHealth health() const { return {}; }
  // The current desired state, or why it cannot be used. EAGAIN: none yet
  // (a source still starting); the agent then leaves the kernel as found.
  virtual Result<DesiredState> load() = 0;
  // A file descriptor that becomes readable when the state may have changed
  // (-1: poll only). drain() clears it.
  virtual int watchFd() const = 0;
  virtual void drain() = 0;
  virtual std::string describe() const = 0;
};

// Reads a file; watches its directory with inotify so that both in-place
// writes and atomic renames are noticed.
class FileStateSource final : public DesiredStateSource {
 public:
  explicit FileStateSource(std::string path);
  Result<DesiredState> load() override;
  int watchFd() const override { return inotify_.get(); }
  void drain() override;
  std::string describe() const override { return "file " + path_; }

 private:
  std::string path_;
  Fd inotify_;
};

using nsegress::writeFileAtomically;

}  // namespace nsegress::gateway
