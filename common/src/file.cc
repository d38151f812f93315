#include "nsegress/common/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nsegress/common/fd.h"

namespace nsegress {

Status writeFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return makeError(errno, tmp + ": " + strerror(errno));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0) {
      int e = errno;
      fd.reset();
      unlink(tmp.c_str());
      return makeError(e, tmp + ": write: " + strerror(e));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd.get()) != 0) {
    int e = errno;
    fd.reset();
    unlink(tmp.c_str());
    return makeError(e, tmp + ": fsync: " + strerror(e));
  }
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) < 0) {
    int e = errno;
    unlink(tmp.c_str());
    return makeError(e, path + ": rename: " + strerror(e));
  }
  return okStatus();
}

namespace {
FileStamp stampOf(const struct stat& st) {
  return FileStamp{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                   static_cast<uint64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}
}  // namespace

std::optional<FileStamp> statFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return stampOf(st);
}

Result<FileContent> readFileBounded(const std::string& path, size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!fd) return makeError(errno, path + ": cannot open: " + strerror(errno));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return makeError(errno, path + ": stat: " + strerror(errno));
  if (!S_ISREG(st.st_mode)) return makeError(EINVAL, path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return makeError(EFBIG, path + ": " + std::to_string(st.st_size) + " bytes, larger than " +
                                std::to_string(max_bytes));
  FileContent out;
  out.stamp = stampOf(st);
  out.text.resize(static_cast<size_t>(st.st_size) + 1);
  size_t got = 0;
  for (;;) {
    if (got == out.text.size()) {
      if (got > max_bytes)
        return makeError(EFBIG, path + ": grew past " + std::to_string(max_bytes));
      out.text.resize(std::min(out.text.size() * 2 + 1, max_bytes + 1));
    }
    ssize_t n = read(fd.get(), out.text.data() + got, out.text.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return makeError(errno, path + ": read: " + strerror(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
    if (got > max_bytes) return makeError(EFBIG, path + ": grew past " + std::to_string(max_bytes));
  }
  out.text.resize(got);
  return out;
}

}  // namespace nsegress
