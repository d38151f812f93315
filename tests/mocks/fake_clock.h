// A clock that moves only when a test says so (unit tests of pure logic:
// election, backoff, schedules). Threads sleeping on it wake when advance()
// passes their deadline, or on a stop request.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>

#include "nsegress/common/clock.h"

namespace nsegress::testing {

class FakeClock final : public Clock {
 public:
  FakeClock() : now_(std::chrono::steady_clock::time_point(std::chrono::hours(1000))) {}
  TimePoint now() const override {
    std::lock_guard l(mu_);
    return now_;
  }
  std::chrono::system_clock::time_point wallNow() const override {
    std::lock_guard l(mu_);
    return wall_base_ + (now_ - std::chrono::steady_clock::time_point(std::chrono::hours(1000)));
  }
  bool sleepUntil(TimePoint t, Stopper& stop) override {
    ++sleeps_;
    while (!stop.requested() && now() < t) stop.napFor(std::chrono::milliseconds(1));
    return !stop.requested();
  }
  void advance(Duration d) {
    std::lock_guard l(mu_);
    now_ += d;
  }
  // Wall time of the fake epoch (default 2026-11-25T12:00:00Z).
  void setWall(std::chrono::system_clock::time_point t) {
    std::lock_guard l(mu_);
    wall_base_ = t;
  }
  uint64_t sleeps() const { return sleeps_; }

 private:
  mutable std::mutex mu_;
  TimePoint now_;
  std::chrono::system_clock::time_point wall_base_{std::chrono::seconds(1795608000)};
  std::atomic<uint64_t> sleeps_{0};
};

}  // namespace nsegress::testing
