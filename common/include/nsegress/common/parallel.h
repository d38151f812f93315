// Independent blocking calls (API writes) run `width` at a time: a burst is
// not a queue of round trips. Stops taking new items at the first error,
// which it returns.
#pragma once

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "nsegress/common/result.h"

namespace nsegress {

// `f(i)` for i in [0, count), returning Status.
template <typename F>
std::optional<Error> runParallel(size_t count, size_t width, F&& f) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::optional<Error> first_error;
  std::mutex err_mu;
  auto worker = [&] {
    for (size_t i; !failed && (i = next++) < count;)
      if (Status s = f(i); !s) {
        std::lock_guard l(err_mu);
        if (!first_error) first_error = s.error();
        failed = true;
      }
  };
  const size_t n = std::min(width, count);
  if (n <= 1) {
    worker();
  } else {
    std::vector<std::thread> threads;
    for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
  }
  return first_error;
}

}  // namespace nsegress
