#include "nsegress/gateway/agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>

#include "nsegress/gateway/failover.h"

namespace nsegress::gateway {

Agent::Agent(boost::asio::io_context& io, Clock& clock, DesiredStateSource& source,
             NodeDataplane& dataplane, ConntrackKernel* conntrack, GatewayMetrics* metrics,
             DriverOptions opts, Failover* failover)
    : io_(io),
      source_(source),
      dataplane_(dataplane),
      conntrack_(conntrack),
      metrics_(metrics),
      failover_(failover),
      driver_(
          io, clock, opts, [this](const RunRequest& r) { return run(r); },
          metrics ? &metrics->driver : nullptr) {}

void Agent::start() {
  if (source_.watchFd() >= 0) {
    watch_.emplace(io_, ::dup(source_.watchFd()));
    armWatch();
  }
  driver_.start();
}

void Agent::armWatch() {
  watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (ec) return;
                       source_.drain();
                       driver_.trigger();
                       armWatch();
                     });
}

void Agent::reportSource() {
  if (!metrics_) return;
  const auto h = source_.health();
  metrics_->source_synced.Set(h.synced ? 1 : 0);
  metrics_->source_errors.Set(static_cast<double>(h.errors));
  metrics_->source_relists.Set(static_cast<double>(h.relists));
  metrics_->source_warnings.Set(static_cast<double>(h.warnings));
}

RunResult Agent::run(const RunRequest& req) {
  auto s = source_.load();
  reportSource();
  if (!s && s.error().code == EAGAIN && !last_good_) {
    // A source still starting (an API server not listed yet): not an error;
    // its first list triggers the next run.
    spdlog::info("desired state not available yet, kernel left as found: {}", s.error().message);
    return RunResult::idle();
  }
  if (!s) {
    // Keep the last good state programmed; never act on a bad document.
    if (metrics_) metrics_->state_errors.Increment();
    spdlog::error("desired state rejected, keeping last good state (generation {}): {}",
                  last_good_ ? std::to_string(last_good_->generation) : "none", s.error().message);
    if (!last_good_) return RunResult::idle();  // nothing to enforce: kernel left as adopted
  } else {
    if (!last_good_ || !(*last_good_ == *s))
      spdlog::info("desired state generation {}: {} namespaces from {}", s->generation,
                   s->namespaces.size(), source_.describe());
    last_good_ = std::move(*s);
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<DesiredState> overlaid;
  if (failover_) {
    // Who owns each address as this node knows it now (a takeover runs
    // ahead of the controller's next state).
    failover_->setDesired(*last_good_);
    overlaid = failover_->effective(*last_good_);
  }
  auto r = dataplane_.reconcile(overlaid ? *overlaid : *last_good_, req.full);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r) {
    spdlog::error("reconcile failed (retrying with backoff): {}", r.error().message);
    return RunResult::error();
  }
  reportOutcome(*r, secs);
  if (on_applied_) on_applied_(overlaid ? *overlaid : *last_good_);
  return RunResult::ok();
}

void Agent::reportOutcome(const ReconcileOutcome& r, double secs) {
  const auto& st = r.stats;
  if (st.nft_ops || st.addresses_added || st.addresses_removed || st.flows_flushed ||
      st.route_ops) {
    spdlog::info(
        "reconciled in {:.1f} ms: {} nft ops in {} txns, +{}/-{} addresses, {} flows flushed, {} "
        "route ops",
        secs * 1000, st.nft_ops, st.transactions, st.addresses_added, st.addresses_removed,
        st.flows_flushed, st.route_ops);
  }
  if (!metrics_) return;
  metrics_->nft_ops.Increment(static_cast<double>(st.nft_ops));
  metrics_->nft_transactions.Increment(static_cast<double>(st.transactions));
  metrics_->flows_flushed.Increment(static_cast<double>(st.flows_flushed));
  metrics_->addresses_added.Increment(static_cast<double>(st.addresses_added));
  metrics_->addresses_removed.Increment(static_cast<double>(st.addresses_removed));
  metrics_->state_generation.Set(static_cast<double>(last_good_->generation));
  metrics_->namespaces.Set(static_cast<double>(last_good_->namespaces.size()));
  metrics_->last_success.SetToCurrentTime();
  if (!r.observed_kernel) return;
  std::map<std::string, std::string> ns_egress;
  for (const auto& ns : last_good_->namespaces) {
    if (ns.egress_v4)
      ns_egress[ns.name] = ns.egress_v4->str();
    else if (ns.egress_v6)
      ns_egress[ns.name] = ns.egress_v6->str();
  }
  metrics_->snapshot()->update(r.counters, std::move(ns_egress));
  metrics_->snapshot()->updateDrops(r.drops);
  // A full conntrack dump: only with the periodic full read of the kernel,
  // not on every incremental change.
  if (conntrack_) {
    // Flows per destination only when a namespace has port blocks (a map
    // entry per flow otherwise built for nothing).
    const bool blocks =
        std::any_of(last_good_->namespaces.begin(), last_good_->namespaces.end(),
                    [](const NamespaceEgress& n) { return n.port_blocks_required; });
    if (auto c = conntrack_->census(blocks)) {
      std::map<std::string, size_t> by_ip;
      for (const auto& [ip, n] : c->by_egress) by_ip[ip.str()] = n;
      metrics_->snapshot()->updateFlows(std::move(by_ip));
      auto pressure = blockPressure(*last_good_, *c);
      for (const auto& [ns, p] : pressure)
        if (p.ratio >= 0.9)
          spdlog::warn(
              "namespace {}: pod {} has {} flows to one destination in its block of {} ports: "
              "new connections there fail when it is full (raise the pool's portBlockSize)",
              ns, p.pod.str(), p.flows, p.ports);
      metrics_->snapshot()->updateBlockPressure(std::move(pressure));
    }
  }
}

}  // namespace nsegress::gateway
