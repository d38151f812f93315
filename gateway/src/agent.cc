#include "nsegress/gateway/agent.h"

#include <spdlog/spdlog.h>

#include <cerrno>

#include <boost/asio/post.hpp>

namespace nsegress::gateway {

Agent::Agent(boost::asio::io_context& io, DesiredStateSource& source, Reconciler& reconciler,
             ConntrackKernel* conntrack, GatewayMetrics* metrics, AgentOptions opts)
    : io_(io),
      source_(source),
      reconciler_(reconciler),
      conntrack_(conntrack),
      metrics_(metrics),
      opts_(opts),
      resync_timer_(io),
      retry_timer_(io),
      debounce_timer_(io),
      backoff_(opts.retry_min) {}

void Agent::start() {
  if (source_.watchFd() >= 0) {
    watch_.emplace(io_, ::dup(source_.watchFd()));
    armWatch();
  }
  loadAndReconcile(/*full=*/true);
  armResync();
}

void Agent::armWatch() {
  watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (ec) return;
                       source_.drain();
                       // Coalesce a burst of file events into one reload.
                       debounce_timer_.expires_after(std::chrono::milliseconds(20));
                       debounce_timer_.async_wait([this](const boost::system::error_code& e) {
                         if (!e) loadAndReconcile(/*full=*/false);
                       });
                       armWatch();
                     });
}

void Agent::armResync() {
  resync_timer_.expires_after(opts_.resync);
  resync_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    loadAndReconcile(/*full=*/true);
    armResync();
  });
}

void Agent::loadAndReconcile(bool full) {
  auto s = source_.load();
  if (metrics_) {
    const auto h = source_.health();
    metrics_->source_synced.Set(h.synced ? 1 : 0);
    metrics_->source_errors.Set(static_cast<double>(h.errors));
    metrics_->source_relists.Set(static_cast<double>(h.relists));
    metrics_->source_warnings.Set(static_cast<double>(h.warnings));
  }
  if (!s && s.error().code == EAGAIN && !last_good_) {
    // A source still starting (an API server not listed yet): not an error.
    spdlog::info("desired state not available yet, kernel left as found: {}", s.error().message);
    return;
  }
  if (!s) {
    // Keep the last good state programmed; never act on a bad document.
    if (metrics_) metrics_->state_errors.Increment();
    spdlog::error("desired state rejected, keeping last good state (generation {}): {}",
                  last_good_ ? std::to_string(last_good_->generation) : "none", s.error().message);
    if (!last_good_) return;  // nothing to enforce yet: leave the kernel as adopted
  } else {
    if (!last_good_ || !(*last_good_ == *s))
      spdlog::info("desired state generation {}: {} namespaces from {}", s->generation,
                   s->namespaces.size(), source_.describe());
    last_good_ = std::move(*s);
  }
  reconcile(full);
}

void Agent::reconcile(bool full) {
  if (!last_good_) return;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = reconciler_.reconcile(*last_good_, full);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r) {
    if (metrics_) metrics_->reconcile_error.Increment();
    spdlog::error("reconcile failed (retry in {} ms): {}", backoff_.count(), r.error().message);
    scheduleRetry();
    return;
  }
  backoff_ = opts_.retry_min;
  if (r->planned_ops > 0) {
    spdlog::info(
        "reconciled in {:.1f} ms: {} ops, {} nft txns, +{}/-{} addresses, {} flows flushed",
        secs * 1000, r->planned_ops, r->stats.transactions, r->stats.addresses_added,
        r->stats.addresses_removed, r->stats.flows_flushed);
  }
  if (metrics_) {
    metrics_->reconcile_ok.Increment();
    metrics_->reconcile_seconds.Observe(secs);
    metrics_->nft_ops.Increment(static_cast<double>(r->stats.nft_ops));
    metrics_->nft_transactions.Increment(static_cast<double>(r->stats.transactions));
    metrics_->flows_flushed.Increment(static_cast<double>(r->stats.flows_flushed));
    metrics_->addresses_added.Increment(static_cast<double>(r->stats.addresses_added));
    metrics_->addresses_removed.Increment(static_cast<double>(r->stats.addresses_removed));
    metrics_->state_generation.Set(static_cast<double>(last_good_->generation));
    metrics_->namespaces.Set(static_cast<double>(last_good_->namespaces.size()));
    metrics_->last_success.SetToCurrentTime();
    std::map<std::string, std::string> ns_egress;
    for (const auto& ns : last_good_->namespaces) {
      if (ns.egress_v4)
        ns_egress[ns.name] = ns.egress_v4->str();
      else if (ns.egress_v6)
        ns_egress[ns.name] = ns.egress_v6->str();
    }
    if (r->observed_kernel)
      metrics_->snapshot()->update(std::move(r->counters), std::move(ns_egress));
    // A full conntrack dump: only with the periodic full read of the kernel,
    // not on every incremental change.
    if (conntrack_ && r->observed_kernel) {
      if (auto flows = conntrack_->countByEgress()) {
        std::map<std::string, size_t> by_ip;
        for (const auto& [ip, n] : *flows) by_ip[ip.str()] = n;
        metrics_->snapshot()->updateFlows(std::move(by_ip));
      }
    }
  }
}

void Agent::scheduleRetry() {
  if (retry_pending_) return;
  retry_pending_ = true;
  retry_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, opts_.retry_max);
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    retry_pending_ = false;
    if (!ec) reconcile(/*full=*/true);
  });
}

}  // namespace nsegress::gateway
