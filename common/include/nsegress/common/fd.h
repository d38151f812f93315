// Move-only owners of kernel handles: `Fd` for file descriptors and
// `Handle<T, free>` for C library objects (libmnl sockets, libnftnl objects,
// libnl caches, conntrack handles). One definition instead of a deleter
// struct per type; copying is a compile error, so nothing is closed twice.
#pragma once

#include <unistd.h>

#include <memory>
#include <utility>

namespace nsegress {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A C object freed by `Free` (a function such as nftnl_rule_free).
template <auto Free>
struct FreeWith {
  template <typename T>
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
template <typename T, auto Free>
using Handle = std::unique_ptr<T, FreeWith<Free>>;

}  // namespace nsegress
