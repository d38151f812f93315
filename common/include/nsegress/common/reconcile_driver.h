// The one reconcile loop of every nsegress process (after controller-runtime):
// anything may trigger a reconcile (a watch event, an election won or lost, a
// signal, a timer); triggers are coalesced, a periodic resync re-reads
// everything, a failed reconcile is retried with exponential backoff, and a
// shutdown is delivered through the same loop.
//
// Two parts:
//  - DriverCore: the decisions, pure (times in, decisions out), unit-tested
//    on made-up times;
//  - ReconcileDriver: runs a DriverCore on a Boost.Asio io_context with one
//    timer, calls the reconcile function on that context's thread, and
//    observes `<prefix>_reconcile_total{result}` and
//    `<prefix>_reconcile_seconds`.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "nsegress/common/clock.h"

namespace nsegress {

struct DriverOptions {
  // A burst of triggers within this window of the first one runs once.
  std::chrono::milliseconds debounce{20};
  // Full reconcile this long after the previous run started (0: never).
  std::chrono::milliseconds resync{10'000};
  // Retry after a failure: backoff_min, doubling, at most backoff_max.
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{10'000};
};

// What a run is asked to do.
struct RunRequest {
  bool full = false;  // re-read everything (start, resync, retry after a failure)
};

// How a run went.
struct RunResult {
  enum class Kind {
    kOk,     // converged
    kError,  // failed: retry with backoff (counted as an error)
    kIdle,   // nothing could be done yet (e.g. not the leader, no first list): not counted
  };
  Kind kind = Kind::kOk;
  // Run again no later than this from now (e.g. the next quarantine expiry).
  std::optional<std::chrono::milliseconds> requeue_after;
  static RunResult ok() { return {}; }
  static RunResult error() { return {Kind::kError, {}}; }
  static RunResult idle() { return {Kind::kIdle, {}}; }
};

class DriverCore {
 public:
  using TimePoint = Clock::TimePoint;
  DriverCore(DriverOptions o, TimePoint now);

  // A change: run after the debounce window (or with the pending retry).
  // `urgent`: no debounce (an ownership change the data path must follow now).
  void trigger(TimePoint now, bool full = false, bool urgent = false);
  // Stop: no run is due after this.
  void shutdown() { stopped_ = true; }
  bool stopped() const { return stopped_; }

  // When the next run is due (nullopt: none, i.e. stopped).
  std::optional<TimePoint> nextWake() const;
  // A run due at `now`, if any; the caller runs it and reports finished().
  std::optional<RunRequest> poll(TimePoint now);
  void finished(TimePoint now, const RunResult& r);

  std::chrono::milliseconds currentBackoff() const { return backoff_; }

 private:
  DriverOptions o_;
  bool stopped_ = false;
  bool running_ = false;
  std::optional<TimePoint> change_due_;  // a coalesced trigger
  bool change_full_ = false;
  std::optional<TimePoint> retry_due_;  // after a failure
  std::optional<TimePoint> requeue_due_;
  TimePoint resync_due_;
  std::chrono::milliseconds backoff_;
};

struct DriverMetrics {
  prometheus::Counter& ok;
  prometheus::Counter& error;
  prometheus::Histogram& seconds;
  // Registers `<prefix>_reconcile_total{result="success"|"error"}` and
  // `<prefix>_reconcile_seconds` in `r`.
  static DriverMetrics create(prometheus::Registry& r, const std::string& prefix);
};

class ReconcileDriver {
 public:
  using Fn = std::function<RunResult(const RunRequest&)>;
  ReconcileDriver(boost::asio::io_context& io, Clock& clock, DriverOptions o, Fn fn,
                  DriverMetrics* metrics = nullptr);
  // Runs a full reconcile at once (on the io_context), then follows triggers.
  void start();
  // Thread-safe: may be called from any thread (informers, electors).
  void trigger(bool full = false, bool urgent = false);
  // Thread-safe: no more runs; `then` runs on the io_context (after any run
  // in progress), for the process's own shutdown steps.
  void shutdown(std::function<void()> then = {});
  uint64_t runs() const { return runs_; }

 private:
  void arm();
  void wake();

  boost::asio::io_context& io_;
  Clock& clock_;
  DriverCore core_;
  Fn fn_;
  DriverMetrics* metrics_;
  boost::asio::steady_timer timer_;
  std::atomic<uint64_t> runs_{0};
};

}  // namespace nsegress
