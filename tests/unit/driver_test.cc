// The reconcile driver's decisions on made-up times (DriverCore), and the
// Asio shell running a real loop briefly.
#include "nsegress/common/reconcile_driver.h"

#include <gtest/gtest.h>

#include <thread>

namespace nsegress {
namespace {

using std::chrono::milliseconds;
using T = Clock::TimePoint;

T at(int ms) {
  return T(milliseconds(1'000'000 + ms));
}

DriverOptions opts() {
  DriverOptions o;
  o.debounce = milliseconds(20);
  o.resync = milliseconds(10'000);
  o.backoff_min = milliseconds(100);
  o.backoff_max = milliseconds(800);
  return o;
}

TEST(DriverCore, FirstRunIsImmediateAndFull) {
  DriverCore c(opts(), at(0));
  auto r = c.poll(at(0));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->full);
  EXPECT_FALSE(c.poll(at(0))) << "one run at a time";
  c.finished(at(5), RunResult::ok());
  EXPECT_FALSE(c.poll(at(5)));
  EXPECT_EQ(*c.nextWake(), at(10'000)) << "then the periodic resync";
}

TEST(DriverCore, ABurstOfTriggersRunsOnceAfterTheWindowOfTheFirst) {
  DriverCore c(opts(), at(0));
  ASSERT_TRUE(c.poll(at(0)));
  c.finished(at(1), RunResult::ok());
  c.trigger(at(100));
  c.trigger(at(110));
  c.trigger(at(119));
  EXPECT_FALSE(c.poll(at(119)));
  EXPECT_EQ(*c.nextWake(), at(120)) << "the window starts with the first trigger";
  auto r = c.poll(at(120));
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->full) << "a change is incremental";
  c.finished(at(121), RunResult::ok());
  EXPECT_FALSE(c.poll(at(200))) << "the burst ran once";
}

TEST(DriverCore, AnUrgentTriggerRunsAtOnceEvenInsideAWindow) {
  DriverCore c(opts(), at(0));
  ASSERT_TRUE(c.poll(at(0)));
  c.finished(at(1), RunResult::ok());
  c.trigger(at(100));
  EXPECT_FALSE(c.poll(at(105)));
  c.trigger(at(106), false, /*urgent=*/true);  // an ownership change
  EXPECT_EQ(*c.nextWake(), at(106));
  auto r = c.poll(at(106));
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->full);
  c.finished(at(107), RunResult::ok());
  EXPECT_FALSE(c.poll(at(120))) << "the debounced trigger was served by the same run";
}

TEST(DriverCore, ATriggerDuringARunRunsAgainAfterIt) {
  DriverCore c(opts(), at(0));
  ASSERT_TRUE(c.poll(at(0)));
  c.trigger(at(2));  // arrives while the first run is in progress
  EXPECT_FALSE(c.poll(at(30)));
  c.finished(at(40), RunResult::ok());
  EXPECT_TRUE(c.poll(at(40))) << "the change seen during the run is not lost";
}

TEST(DriverCore, FailuresBackOffExponentiallyAndSuccessResets) {
  DriverCore c(opts(), at(0));
  int now = 0;
  std::vector<int> delays;
  ASSERT_TRUE(c.poll(at(now)));
  for (int i = 0; i < 6; ++i) {
    c.finished(at(now), RunResult::error());
    const auto wake = *c.nextWake();
    delays.push_back(
        static_cast<int>(std::chrono::duration_cast<milliseconds>(wake - at(now)).count()));
    now = static_cast<int>(std::chrono::duration_cast<milliseconds>(wake - at(0)).count());
    EXPECT_FALSE(c.poll(at(now - 1)));
    auto r = c.poll(at(now));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->full) << "a retry re-reads everything";
  }
  EXPECT_EQ(delays, (std::vector<int>{100, 200, 400, 800, 800, 800}));
  c.finished(at(now), RunResult::ok());
  EXPECT_EQ(c.currentBackoff(), milliseconds(100));
}

TEST(DriverCore, ChangesDuringBackoffWaitForTheRetry) {
  DriverCore c(opts(), at(0));
  ASSERT_TRUE(c.poll(at(0)));
  c.finished(at(0), RunResult::error());  // retry at 100
  c.trigger(at(10));
  EXPECT_FALSE(c.poll(at(30))) << "no hammering a failing kernel or API";
  EXPECT_EQ(*c.nextWake(), at(100));
  EXPECT_TRUE(c.poll(at(100)));
}

TEST(DriverCore, RequeueAfterAndIdleRunsAndShutdown) {
  DriverCore c(opts(), at(0));
  ASSERT_TRUE(c.poll(at(0)));
  RunResult r = RunResult::idle();
  r.requeue_after = milliseconds(500);
  c.finished(at(0), r);
  EXPECT_EQ(*c.nextWake(), at(500));
  EXPECT_EQ(c.currentBackoff(), milliseconds(100)) << "idle is not a failure";
  c.shutdown();
  c.trigger(at(10));
  EXPECT_FALSE(c.nextWake());
  EXPECT_FALSE(c.poll(at(100'000)));
}

TEST(DriverCore, ResyncIsFull) {
  DriverCore c(opts(), at(0));
  ASSERT_TRUE(c.poll(at(0)));
  c.finished(at(1), RunResult::ok());
  auto r = c.poll(at(10'000));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->full);
}

TEST(ReconcileDriver, RunsOnItsLoopCountsMetricsAndShutsDown) {
  boost::asio::io_context io;
  prometheus::Registry reg;
  auto m = DriverMetrics::create(reg, "test");
  int calls = 0, fails = 1;
  DriverOptions o = opts();
  o.backoff_min = milliseconds(1);
  ReconcileDriver d(
      io, SystemClock::instance(), o,
      [&](const RunRequest&) {
        ++calls;
        return fails-- > 0 ? RunResult::error() : RunResult::ok();
      },
      &m);
  d.start();
  bool shut = false;
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(100));
    d.trigger();
    std::this_thread::sleep_for(milliseconds(100));
    d.shutdown([&] {
      shut = true;
      io.stop();
    });
  });
  io.run();
  t.join();
  EXPECT_TRUE(shut);
  EXPECT_EQ(calls, 3) << "start (fails), retry, trigger";
  EXPECT_EQ(m.error.Value(), 1);
  EXPECT_EQ(m.ok.Value(), 2);
}

}  // namespace
}  // namespace nsegress
