// Prometheus metrics of the gateway agent.
#pragma once

#include <prometheus/collectable.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <functional>

#include <map>
#include <memory>
#include <mutex>

#include "nsegress/common/reconcile_driver.h"
#include "nsegress/gateway/dataplane.h"

namespace nsegress::gateway {

// Kernel-side counters (nft named counters, conntrack) mirrored at each
// reconcile and exported as Prometheus counters/gauges at scrape time.
// How full each namespace's port blocks are: per namespace, the highest
// share of a pod's block taken by flows to one destination (a block of N
// ports carries at most N flows to one destination: the next one fails),
// and that pod.
struct BlockPressure {
  double ratio = 0;
  IpAddress pod;
  size_t flows = 0, ports = 0;
};
std::map<std::string, BlockPressure> blockPressure(const DesiredState& d, const FlowCensus& c);

class KernelSnapshot final : public prometheus::Collectable {
 public:
  void update(std::map<std::string, NamespaceCounters> per_ns,
              std::map<std::string, std::string> ns_egress);
  void updateFlows(std::map<std::string, size_t> flows_by_egress);
  void updateBlockPressure(std::map<std::string, BlockPressure> per_ns);
  // The table's own drop counters: blocked, spoofed, inbound, tunnel-foreign,
  // steer-spoofed, uplink-spoofed.
  void updateDrops(std::map<std::string, uint64_t> drops);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mu_;
  std::map<std::string, NamespaceCounters> per_ns_;
  std::map<std::string, std::string> ns_egress_;
  std::map<std::string, size_t> flows_;
  std::map<std::string, BlockPressure> pressure_;
  std::map<std::string, uint64_t> drops_;
};

// Runs a function at each scrape (registered before the registry, so the
// gauges it sets are current in the same scrape) and exports nothing itself.
class ScrapeHook final : public prometheus::Collectable {
 public:
  explicit ScrapeHook(std::function<void()> f) : f_(std::move(f)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    f_();
    return {};
  }

 private:
  std::function<void()> f_;
};

class GatewayMetrics {
 public:
  GatewayMetrics();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  std::shared_ptr<KernelSnapshot> snapshot() const { return snapshot_; }

  // nsegress_gateway_reconcile_total{result}, nsegress_gateway_reconcile_seconds
  DriverMetrics driver;
  prometheus::Counter& nft_ops;
  prometheus::Counter& nft_transactions;
  prometheus::Counter& flows_flushed;
  prometheus::Counter& addresses_added;
  prometheus::Counter& addresses_removed;
  prometheus::Counter& state_errors;
  prometheus::Gauge& state_generation;
  prometheus::Gauge& namespaces;
  prometheus::Gauge& source_synced;
  prometheus::Gauge& source_errors;
  prometheus::Gauge& source_relists;
  prometheus::Gauge& source_warnings;
  prometheus::Gauge& last_success;
  // Failover (docs/architecture.md "Failover").
  prometheus::Counter& failover_takeovers;
  prometheus::Counter& failover_fenced;
  prometheus::Counter& failover_refused;
  prometheus::Counter& failover_fence_errors;
  prometheus::Gauge& failover_live;
  prometheus::Histogram& failover_duration;
  prometheus::Counter& failover_heartbeats_lost;
  prometheus::Counter& failover_handovers;
  // Conntrack sync (docs/architecture.md "Conntrack sync").
  prometheus::Family<prometheus::Counter>& ct_sync_changes;
  prometheus::Family<prometheus::Counter>& ct_sync_loss;
  prometheus::Family<prometheus::Counter>& ct_sync_resyncs;
  prometheus::Family<prometheus::Counter>& ct_sync_committed;
  prometheus::Counter& ct_sync_refused;
  prometheus::Gauge& ct_sync_cached;
  prometheus::Histogram& ct_sync_lag;
  // Adds what changed between two snapshots of CtSync's counters.
  void publishCtSync(const struct CtSyncStats& before, const struct CtSyncStats& now,
                     size_t cached);

 private:
  GatewayMetrics(std::shared_ptr<prometheus::Registry> r);
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<KernelSnapshot> snapshot_;
};

}  // namespace nsegress::gateway
