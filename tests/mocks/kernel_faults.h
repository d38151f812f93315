// Shared by the kernel fakes: a simulated crash after a number of kernel
// operations, a trace of the operations in order, and a check run after each
// (unit tests assert invariants at every intermediate kernel state).
#pragma once

#include <cerrno>
#include <functional>
#include <string>
#include <vector>

#include "nsegress/common/result.h"

namespace nsegress::testing {

struct KernelFaults {
  int fail_after = -1;               // operations until a simulated crash (-1: never)
  std::function<void()> after_each;  // runs after every operation that changed something
  std::vector<std::string> trace;    // "nft txn", "add 203.0.113.10", ...

  Status before(const std::string& what) {
    if (fail_after == 0) return makeError(EIO, "simulated crash before " + what);
    if (fail_after > 0) --fail_after;
    trace.push_back(what);
    return okStatus();
  }
  void after() {
    if (after_each) after_each();
  }
};

}  // namespace nsegress::testing
