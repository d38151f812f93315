#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "nsegress/common/result.h"

namespace nsegress {

// Writes `content` to `path` atomically (temp file, fsync, rename), so a
// reader never sees a half-written file.
Status writeFileAtomically(const std::string& path, const std::string& content);

// Identity and version of a file as stat(2) reports it: a change of any
// field means the content may have changed.
struct FileStamp {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

// The stamp of `path` as it is now (following symlinks), nullopt if it
// cannot be stat'ed (missing, mid-swap).
std::optional<FileStamp> statFile(const std::string& path);

struct FileContent {
  std::string text;
  FileStamp stamp;
};

// Reads a regular file of at most `max_bytes`, as hostile input: it is opened
// non-blocking (a FIFO never blocks the caller), anything but a regular file
// is refused (a symlink to /dev/zero is not read), the size is checked
// before reading and never more than max_bytes + 1 bytes are read (a file
// growing meanwhile is refused too). Errors name the path.
Result<FileContent> readFileBounded(const std::string& path, size_t max_bytes);

}  // namespace nsegress
