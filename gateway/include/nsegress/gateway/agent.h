// The agent's event loop: reconcile when the desired state changes, on a
// periodic resync (repairs drift), and with backoff after a failure.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>

#include "nsegress/gateway/metrics.h"
#include "nsegress/gateway/reconciler.h"
#include "nsegress/gateway/state_source.h"

namespace nsegress::gateway {

struct AgentOptions {
  std::chrono::milliseconds resync{10'000};
  std::chrono::milliseconds retry_min{100};
  std::chrono::milliseconds retry_max{10'000};
};

class Agent {
 public:
  Agent(boost::asio::io_context& io, DesiredStateSource& source, Reconciler& reconciler,
        ConntrackKernel* conntrack, GatewayMetrics* metrics, AgentOptions opts);
  void start();
  // The last desired state that parsed and validated ("last good").
  const std::optional<DesiredState>& lastGood() const { return last_good_; }

 private:
  void loadAndReconcile(bool full);
  void reconcile(bool full);
  void armWatch();
  void armResync();
  void scheduleRetry();

  boost::asio::io_context& io_;
  DesiredStateSource& source_;
  Reconciler& reconciler_;
  ConntrackKernel* conntrack_;
  GatewayMetrics* metrics_;
  AgentOptions opts_;
  std::optional<boost::asio::posix::stream_descriptor> watch_;
  boost::asio::steady_timer resync_timer_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer debounce_timer_;
  std::optional<DesiredState> last_good_;
  std::chrono::milliseconds backoff_;
  bool retry_pending_ = false;
};

}  // namespace nsegress::gateway
