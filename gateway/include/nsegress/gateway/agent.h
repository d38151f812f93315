// The agent: the shared reconcile driver (common/reconcile_driver.h) running
// the node's data path. A run loads the desired state (the last good one is
// kept when a new one is rejected) and reconciles every provider; the
// state source's watch triggers runs, the driver adds the periodic resync
// (drift repair) and the backoff after failures.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <optional>

#include "nsegress/common/reconcile_driver.h"
#include "nsegress/gateway/dataplane.h"
#include "nsegress/gateway/metrics.h"
#include "nsegress/gateway/state_source.h"

namespace nsegress::gateway {

class Agent {
 public:
  Agent(boost::asio::io_context& io, Clock& clock, DesiredStateSource& source,
        NodeDataplane& dataplane, ConntrackKernel* conntrack, GatewayMetrics* metrics,
        DriverOptions opts, class Failover* failover = nullptr);
  void start();
  // Something changed (any thread): run soon.
  void trigger() { driver_.trigger(); }
  // An ownership change (failover, handover): reconcile without debounce.
  void triggerNow() { driver_.trigger(false, true); }
  // Stops reconciling; `then` runs on the loop afterwards.
  void shutdown(std::function<void()> then) { driver_.shutdown(std::move(then)); }
  // The last desired state that parsed and validated ("last good").
  const std::optional<DesiredState>& lastGood() const { return last_good_; }
  // Sets the source's metrics (synced, errors, …) from its health now.
  // Thread-safe: also called at scrape time, so they never lag a reconcile.
  void reportSource();
  // Called on the agent's loop after each successful reconcile with the
  // state the data path now has (the flow log follows it). Set before start().
  void setOnApplied(std::function<void(const DesiredState&)> f) { on_applied_ = std::move(f); }

 private:
  RunResult run(const RunRequest& req);
  void reportOutcome(const ReconcileOutcome& r, double seconds);
  void armWatch();

  boost::asio::io_context& io_;
  DesiredStateSource& source_;
  NodeDataplane& dataplane_;
  ConntrackKernel* conntrack_;
  GatewayMetrics* metrics_;
  Failover* failover_;
  ReconcileDriver driver_;
  std::optional<boost::asio::posix::stream_descriptor> watch_;
  std::optional<DesiredState> last_good_;
  std::function<void(const DesiredState&)> on_applied_;
};

}  // namespace nsegress::gateway
