// Result<T>: a value or an Error. Used on the data path and in netlink/, where
// exceptions are not allowed (see docs/architecture.md, "Errors").
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace nsegress {

struct Error {
  int code = 0;         // errno-style code where one exists, else 0
  std::string message;  // what failed, for a person
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(std::move(e)) {}      // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<Error>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};

// Result of an operation that yields nothing but may fail.
using Status = Result<Ok>;

inline Status okStatus() {
  return Ok{};
}
inline Error makeError(int code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace nsegress
