// Leader election on a coordination.k8s.io/v1 Lease, after client-go:
// - a lease is taken over only when its record has not changed for
//   lease_duration as observed by us (no trust in the other's clock);
// - a leader acts only while its last successful renewal is younger than
//   renew_deadline (< lease_duration), so the old leader has stopped before a
//   new one can take over;
// - release() on graceful shutdown empties the holder: fast hand-over.
// The API and the clock are injected: tick() is one attempt, unit-tested on
// a fake Lease server and a fake clock; runElection() is the loop.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

#include <functional>

#include "nsegress/common/clock.h"
#include "nsegress/kube/api.h"

namespace nsegress::kube {

struct LeaderOptions {
  std::string ns = "nsegress-system";
  std::string name = "nsegress-controller";
  std::string identity;
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

class LeaderElector {
 public:
  LeaderElector(Api& api, Clock& clock, LeaderOptions opts);
  // One attempt to acquire or renew. Call every retry_period.
  void tick();
  // May this replica act now? Safe to call from any thread while another
  // thread ticks.
  bool isLeader() const;
  // Gives the lease up (graceful shutdown).
  void release();
  // When isLeader() turns false unless renewed (nullopt: not leading).
  std::optional<Clock::TimePoint> leadershipExpiry() const;
  const std::string& holder() const { return observed_holder_; }
  const LeaderOptions& options() const { return opts_; }

 private:
  std::string path() const;
  std::string body(const std::string& holder, const std::string& rv, bool acquire) const;

  std::string microTime() const;

  Api& api_;
  Clock& clock_;
  LeaderOptions opts_;
  std::string observed_holder_;
  std::string observed_record_;  // holder + renewTime + transitions, to detect change
  std::string rv_;
  int transitions_ = 0;
  std::string acquire_time_;
  Clock::TimePoint observed_at_{};
  // Last successful acquire/renew, as clock nanoseconds; 0 = none.
  std::atomic<int64_t> last_renew_{0};
};

// Ticks every retry period until `stop`; `on_change(leader)` runs (on the
// election thread) whenever isLeader() changes, including when leadership
// lapses without a tick (renew deadline passed while the API is away).
// Releases the lease on stop.
void runElection(LeaderElector& e, Clock& clock, Stopper& stop,
                 const std::function<void(bool)>& on_change);

}  // namespace nsegress::kube
