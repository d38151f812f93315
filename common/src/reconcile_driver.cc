#include "nsegress/common/reconcile_driver.h"

#include <boost/asio/post.hpp>

namespace nsegress {

using std::chrono::milliseconds;

DriverCore::DriverCore(DriverOptions o, TimePoint now)
    : o_(o), resync_due_(now + o.resync), backoff_(o.backoff_min) {
  change_due_ = now;  // the first run: at once, full
  change_full_ = true;
}

void DriverCore::trigger(TimePoint now, bool full, bool urgent) {
  if (stopped_) return;
  change_full_ = change_full_ || full;
  // The window starts with the first trigger of a burst, so a steady stream
  // of events cannot postpone a run forever. An urgent change waits for none.
  if (urgent)
    change_due_ = now;
  else if (!change_due_)
    change_due_ = now + o_.debounce;
}

std::optional<DriverCore::TimePoint> DriverCore::nextWake() const {
  if (stopped_) return std::nullopt;
  std::optional<TimePoint> t;
  auto earliest = [&](const std::optional<TimePoint>& c) {
    if (c && (!t || *c < *t)) t = c;
  };
  if (retry_due_) {
    // While backing off, changes wait for the retry (which reads everything).
    earliest(retry_due_);
  } else {
    earliest(change_due_);
  }
  earliest(requeue_due_);
  if (o_.resync.count() > 0) earliest(resync_due_);
  return t;
}

std::optional<RunRequest> DriverCore::poll(TimePoint now) {
  if (stopped_ || running_) return std::nullopt;
  auto due = nextWake();
  if (!due || *due > now) return std::nullopt;
  RunRequest r;
  const bool resync = o_.resync.count() > 0 && resync_due_ <= now;
  r.full = resync || retry_due_.has_value() || change_full_;
  change_due_.reset();
  change_full_ = false;
  retry_due_.reset();
  requeue_due_.reset();
  if (o_.resync.count() > 0) resync_due_ = now + o_.resync;
  running_ = true;
  return r;
}

void DriverCore::finished(TimePoint now, const RunResult& r) {
  running_ = false;
  if (r.kind == RunResult::Kind::kError) {
    retry_due_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, o_.backoff_max);
  } else {
    backoff_ = o_.backoff_min;
  }
  if (r.requeue_after) {
    const TimePoint at = now + *r.requeue_after;
    if (!requeue_due_ || at < *requeue_due_) requeue_due_ = at;
  }
}

DriverMetrics DriverMetrics::create(prometheus::Registry& r, const std::string& prefix) {
  auto& total = prometheus::BuildCounter()
                    .Name(prefix + "_reconcile_total")
                    .Help("Reconciles by result")
                    .Register(r);
  return DriverMetrics{total.Add({{"result", "success"}}), total.Add({{"result", "error"}}),
                       prometheus::BuildHistogram()
                           .Name(prefix + "_reconcile_seconds")
                           .Help("Time of one reconcile")
                           .Register(r)
                           .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01,
                                                                            0.05, 0.1, 0.5, 1, 5})};
}

ReconcileDriver::ReconcileDriver(boost::asio::io_context& io, Clock& clock, DriverOptions o, Fn fn,
                                 DriverMetrics* metrics)
    : io_(io),
      clock_(clock),
      core_(o, clock.now()),
      fn_(std::move(fn)),
      metrics_(metrics),
      timer_(io) {}

void ReconcileDriver::start() {
  boost::asio::post(io_, [this] { wake(); });
}

void ReconcileDriver::trigger(bool full, bool urgent) {
  boost::asio::post(io_, [this, full, urgent] {
    core_.trigger(clock_.now(), full, urgent);
    wake();
  });
}

void ReconcileDriver::shutdown(std::function<void()> then) {
  boost::asio::post(io_, [this, then = std::move(then)] {
    core_.shutdown();
    timer_.cancel();
    if (then) then();
  });
}

void ReconcileDriver::wake() {
  while (auto req = core_.poll(clock_.now())) {
    const auto t0 = clock_.now();
    RunResult r = fn_(*req);
    const auto t1 = clock_.now();
    ++runs_;
    if (metrics_ && r.kind != RunResult::Kind::kIdle) {
      (r.kind == RunResult::Kind::kOk ? metrics_->ok : metrics_->error).Increment();
      metrics_->seconds.Observe(std::chrono::duration<double>(t1 - t0).count());
    }
    core_.finished(t1, r);
  }
  arm();
}

void ReconcileDriver::arm() {
  auto due = core_.nextWake();
  if (!due) return;
  const auto delay = *due - clock_.now();
  timer_.expires_after(delay.count() > 0 ? delay : Clock::Duration::zero());
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) wake();
  });
}

}  // namespace nsegress
