// Time, injected. Every piece of code that reads the time or waits takes a
// Clock, so tests run election, backoff and schedules on a FakeClock
// (tests/mocks/fake_clock.h) instead of sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace nsegress {

// A stop request that wakes every wait on it at once (shutdown is prompt
// without polling).
class Stopper {
 public:
  void request() {
    {
      std::lock_guard l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }
  bool requested() const { return stop_.load(); }
  // Waits until `deadline` (on the system steady clock) or a stop request.
  // Returns false when stopped.
  bool waitUntil(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock l(mu_);
    cv_.wait_until(l, deadline, [&] { return stop_.load(); });
    return !stop_;
  }
  // Waits for at most `d` of real time (FakeClock's sleepers poll with it).
  void napFor(std::chrono::milliseconds d) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, d, [&] { return stop_.load(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
};

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;
  virtual ~Clock() = default;
  // Monotonic time: deadlines, timeouts, backoff.
  virtual TimePoint now() const = 0;
  // Wall-clock time: timestamps written for people and other processes.
  virtual std::chrono::system_clock::time_point wallNow() const = 0;
  // Blocks until now() >= t or `stop` is requested; false when stopped.
  virtual bool sleepUntil(TimePoint t, Stopper& stop) = 0;
  bool sleepFor(Duration d, Stopper& stop) { return sleepUntil(now() + d, stop); }
  // Unix seconds of wallNow().
  int64_t unixNow() const {
    return std::chrono::duration_cast<std::chrono::seconds>(wallNow().time_since_epoch()).count();
  }
};

class SystemClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  std::chrono::system_clock::time_point wallNow() const override {
    return std::chrono::system_clock::now();
  }
  bool sleepUntil(TimePoint t, Stopper& stop) override { return stop.waitUntil(t); }
  // The process's clock (stateless; shared).
  static SystemClock& instance() {
    static SystemClock c;
    return c;
  }
};

}  // namespace nsegress
