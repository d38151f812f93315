#include "nsegress/gateway/state_source.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace nsegress::gateway {

FileStateSource::FileStateSource(std::string path)
    : path_(std::move(path)), inotify_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (inotify_) {
    auto dir = std::filesystem::path(path_).parent_path();
    if (dir.empty()) dir = ".";
    inotify_add_watch(inotify_.get(), dir.c_str(),
                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY);
  }
}

void FileStateSource::drain() {
  char buf[4096];
  while (inotify_ && read(inotify_.get(), buf, sizeof buf) > 0) {
  }
}

Result<DesiredState> FileStateSource::load() {
  // Bounded and non-blocking: a FIFO, a device or a file too large at the
  // path is refused, never read (the last good state stays enforced).
  auto f = readFileBounded(path_, kMaxDesiredStateBytes);
  if (!f) return f.error();
  auto s = parseDesiredState(f->text);
  if (!s) return makeError(s.error().code, path_ + ": " + s.error().message);
  return s;
}

}  // namespace nsegress::gateway
