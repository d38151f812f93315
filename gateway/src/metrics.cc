#include "nsegress/gateway/metrics.h"

#include "nsegress/gateway/ct_sync.h"

namespace nsegress::gateway {

namespace {
prometheus::Counter& counter(prometheus::Registry& r, const std::string& name,
                             const std::string& help, const prometheus::Labels& labels = {}) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}
prometheus::Gauge& gauge(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}
prometheus::Family<prometheus::Counter>& counters(prometheus::Registry& r, const std::string& name,
                                                  const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Histogram& histogram(prometheus::Registry& r, const std::string& name,
                                 const std::string& help,
                                 prometheus::Histogram::BucketBoundaries b) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(b));
}
}  // namespace

GatewayMetrics::GatewayMetrics() : GatewayMetrics(std::make_shared<prometheus::Registry>()) {}

GatewayMetrics::GatewayMetrics(std::shared_ptr<prometheus::Registry> r)
    : driver(DriverMetrics::create(*r, "nsegress_gateway")),
      nft_ops(counter(*r, "nsegress_gateway_nft_ops_total",
                      "nftables operations committed (one netlink message each)")),
      nft_transactions(counter(*r, "nsegress_gateway_nft_transactions_total",
                               "nftables transactions committed")),
      flows_flushed(counter(*r, "nsegress_gateway_conntrack_flows_flushed_total",
                            "Conntrack flows deleted on release")),
      addresses_added(counter(*r, "nsegress_gateway_addresses_added_total",
                              "Egress addresses added to the uplink")),
      addresses_removed(counter(*r, "nsegress_gateway_addresses_removed_total",
                                "Egress addresses removed from the uplink")),
      state_errors(counter(*r, "nsegress_gateway_desired_state_errors_total",
                           "Desired-state documents rejected (last good state kept)")),
      state_generation(gauge(*r, "nsegress_gateway_desired_state_generation",
                             "Generation of the desired state last applied")),
      namespaces(gauge(*r, "nsegress_gateway_namespaces", "Namespaces in the desired state")),
      source_synced(gauge(*r, "nsegress_gateway_state_source_synced",
                          "1 when the desired-state source has a current view (Kubernetes: "
                          "every informer has listed and its last request succeeded)")),
      source_errors(gauge(*r, "nsegress_gateway_state_source_errors",
                          "Failed lists and watches of the state source since start")),
      source_relists(
          gauge(*r, "nsegress_gateway_state_source_relists", "Relists after 410 Gone since start")),
      source_warnings(gauge(*r, "nsegress_gateway_state_source_warnings",
                            "Objects skipped or ambiguous in the current view (e.g. a pod "
                            "address claimed by two namespaces)")),
      last_success(gauge(*r, "nsegress_gateway_last_success_timestamp_seconds",
                         "Unix time of the last successful reconcile")),
      failover_takeovers(counter(*r, "nsegress_gateway_failover_takeovers_total",
                                 "Egress addresses this node took over from a failed owner")),
      failover_fenced(counter(*r, "nsegress_gateway_failover_fenced_total",
                              "Egress addresses this node stopped using because its proof of "
                              "ownership ran out (fencing)")),
      failover_refused(counter(*r, "nsegress_gateway_failover_refused_datagrams_total",
                               "Ownership-protocol datagrams refused (unauthenticated or "
                               "malformed)")),
      failover_fence_errors(counter(*r, "nsegress_gateway_failover_fence_errors_total",
                                    "Kernel fence updates that failed")),
      failover_live(gauge(*r, "nsegress_gateway_failover_live_addresses",
                          "Egress addresses this node may use now (its fence is open for)")),
      failover_duration(histogram(
          *r, "nsegress_gateway_failover_duration_seconds",
          "Takeovers by this node: time from the failed owner's last heartbeat to the takeover",
          {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.5, 2, 5, 10})),
      failover_heartbeats_lost(counter(*r, "nsegress_gateway_failover_heartbeats_lost_total",
                                       "Heartbeats to a peer not acknowledged before the next")),
      failover_handovers(counter(*r, "nsegress_gateway_failover_handovers_total",
                                 "Egress addresses this node handed over in a planned move "
                                 "(drain): released after its fence closed")),
      ct_sync_changes(counters(*r, "nsegress_gateway_ct_sync_changes_total",
                               "Conntrack changes sent to standbys / received from owners")),
      ct_sync_loss(counters(*r, "nsegress_gateway_ct_sync_loss_total",
                            "Conntrack sync losses, each followed by a resync: kernel event "
                            "overruns, datagrams missing from a sender's sequence, changes "
                            "dropped from a full send queue or a full cache")),
      ct_sync_resyncs(counters(*r, "nsegress_gateway_ct_sync_resyncs_total",
                               "Full resyncs sent to a standby / requested from an owner")),
      ct_sync_committed(counters(*r, "nsegress_gateway_ct_sync_committed_total",
                                 "Synced flows committed to the kernel at takeovers")),
      ct_sync_refused(counter(*r, "nsegress_gateway_ct_sync_refused_datagrams_total",
                              "Conntrack sync datagrams refused (unauthenticated or malformed)")),
      ct_sync_cached(gauge(*r, "nsegress_gateway_ct_sync_cached_flows",
                           "Flows held for the addresses this node is standby for")),
      ct_sync_lag(histogram(*r, "nsegress_gateway_ct_sync_lag_seconds",
                            "Time from reading a conntrack event to sending it to the standby",
                            {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1})),
      registry_(std::move(r)),
      snapshot_(std::make_shared<KernelSnapshot>()) {}

void GatewayMetrics::publishCtSync(const CtSyncStats& a, const CtSyncStats& b, size_t cached) {
  auto add = [](prometheus::Family<prometheus::Counter>& f, const prometheus::Labels& l,
                uint64_t from, uint64_t to) {
    if (to > from)
      f.Add(l).Increment(static_cast<double>(to - from));
    else
      f.Add(l);  // present from the start, at 0
  };
  add(ct_sync_changes, {{"direction", "sent"}}, a.changes_sent, b.changes_sent);
  add(ct_sync_changes, {{"direction", "received"}}, a.changes_received, b.changes_received);
  add(ct_sync_loss, {{"where", "kernel"}}, a.kernel_overruns, b.kernel_overruns);
  add(ct_sync_loss, {{"where", "network"}}, a.datagrams_lost, b.datagrams_lost);
  add(ct_sync_loss, {{"where", "queue"}}, a.pending_dropped, b.pending_dropped);
  add(ct_sync_loss, {{"where", "cache"}}, a.cache_full, b.cache_full);
  add(ct_sync_resyncs, {{"side", "sent"}}, a.resyncs_sent, b.resyncs_sent);
  add(ct_sync_resyncs, {{"side", "requested"}}, a.resync_requests, b.resync_requests);
  add(ct_sync_committed, {{"result", "created"}}, a.committed, b.committed);
  add(ct_sync_committed, {{"result", "replaced"}}, a.commit_replaced, b.commit_replaced);
  add(ct_sync_committed, {{"result", "failed"}}, a.commit_failed, b.commit_failed);
  if (b.refused > a.refused) ct_sync_refused.Increment(static_cast<double>(b.refused - a.refused));
  ct_sync_cached.Set(static_cast<double>(cached));
}

void KernelSnapshot::update(std::map<std::string, NamespaceCounters> per_ns,
                            std::map<std::string, std::string> ns_egress) {
  std::lock_guard l(mu_);
  per_ns_ = std::move(per_ns);
  ns_egress_ = std::move(ns_egress);
}

void KernelSnapshot::updateDrops(std::map<std::string, uint64_t> drops) {
  std::lock_guard l(mu_);
  drops_ = std::move(drops);
}

std::map<std::string, BlockPressure> blockPressure(const DesiredState& d, const FlowCensus& c) {
  std::map<std::string, BlockPressure> out;
  for (const auto& ns : d.namespaces) {
    if (!ns.port_blocks_required) continue;
    auto& worst = out[ns.name];
    for (const auto& b : ns.port_blocks) {
      auto it = c.busiest_destination.find(b.pod);
      const size_t flows = it == c.busiest_destination.end() ? 0 : it->second;
      const size_t ports = size_t(b.last) - b.first + 1;
      const double r = static_cast<double>(flows) / static_cast<double>(ports);
      if (r > worst.ratio || worst.ports == 0) worst = BlockPressure{r, b.pod, flows, ports};
    }
  }
  return out;
}

void KernelSnapshot::updateBlockPressure(std::map<std::string, BlockPressure> per_ns) {
  std::lock_guard l(mu_);
  pressure_ = std::move(per_ns);
}

void KernelSnapshot::updateFlows(std::map<std::string, size_t> flows) {
  std::lock_guard l(mu_);
  flows_ = std::move(flows);
}

std::vector<prometheus::MetricFamily> KernelSnapshot::Collect() const {
  std::lock_guard l(mu_);
  auto family = [](std::string name, std::string help, prometheus::MetricType t) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = t;
    return f;
  };
  auto tx_p = family("nsegress_gateway_namespace_egress_packets_total",
                     "Packets of a namespace's pods leaving through the uplink (nft counter)",
                     prometheus::MetricType::Counter);
  auto tx_b = family("nsegress_gateway_namespace_egress_bytes_total",
                     "Bytes of a namespace's pods leaving through the uplink (nft counter)",
                     prometheus::MetricType::Counter);
  auto dr_p = family("nsegress_gateway_namespace_failclosed_drops_total",
                     "Packets dropped because the namespace's mapping was not live",
                     prometheus::MetricType::Counter);
  auto flows = family("nsegress_gateway_conntrack_flows",
                      "Conntrack flows SNATed to an egress address", prometheus::MetricType::Gauge);
  for (const auto& [ns, c] : per_ns_) {
    auto it = ns_egress_.find(ns);
    prometheus::ClientMetric::Label lns{"namespace", ns};
    prometheus::ClientMetric::Label lip{"egress_ip", it == ns_egress_.end() ? "" : it->second};
    prometheus::ClientMetric m;
    m.label = {lns, lip};
    m.counter.value = static_cast<double>(c.tx_packets);
    tx_p.metric.push_back(m);
    m.counter.value = static_cast<double>(c.tx_bytes);
    tx_b.metric.push_back(m);
    m.label = {lns};
    m.counter.value = static_cast<double>(c.drop_packets);
    dr_p.metric.push_back(m);
  }
  for (const auto& [ip, n] : flows_) {
    prometheus::ClientMetric m;
    m.label = {{"egress_ip", ip}};
    m.gauge.value = static_cast<double>(n);
    flows.metric.push_back(m);
  }
  auto pressure = family(
      "nsegress_gateway_port_block_usage_ratio",
      "Attribution by port: per namespace, the highest share of one pod's port block taken by "
      "its flows to one destination (at 1 the pod's next connection there fails)",
      prometheus::MetricType::Gauge);
  for (const auto& [ns, p] : pressure_) {
    prometheus::ClientMetric m;
    m.label = {{"namespace", ns}};
    m.gauge.value = p.ratio;
    pressure.metric.push_back(m);
  }
  std::vector<prometheus::MetricFamily> out = {tx_p, tx_b, dr_p, flows, pressure};
  struct Drop {
    const char* counter;
    const char* metric;
    const char* help;
  };
  for (const Drop& d :
       {Drop{kBlockedCounter, "nsegress_gateway_blocked_drops_total",
             "Packets dropped because their source address is claimed by pods of more than one "
             "namespace (attributable to none)"},
        Drop{kSpoofedCounter, "nsegress_gateway_spoofed_drops_total",
             "Packets dropped because their source address is not routed back through the "
             "interface they came in on (a forged pod address)"},
        Drop{kInboundCounter, "nsegress_gateway_inbound_drops_total",
             "New inbound connections to an egress address, dropped (egress addresses accept "
             "replies only)"},
        Drop{kTunnelForeignCounter, "nsegress_gateway_tunnel_foreign_drops_total",
             "Steering tunnel packets from an address that is not a node of the cluster, dropped"},
        Drop{kSteerSpoofedCounter, "nsegress_gateway_steer_spoofed_drops_total",
             "Steered packets whose inner source is not a pod of the node that sent them (a node "
             "sending as another node's pod), dropped"},
        Drop{kUplinkSpoofedCounter, "nsegress_gateway_uplink_spoofed_drops_total",
             "Packets arriving on a dedicated uplink with a pod's or a node's address, dropped"},
        Drop{kUnsteeredCounter, "nsegress_gateway_unsteered_drops_total",
             "Packets of a steered pod that would have left unsteered (a flow older than its "
             "steering, invalid or untracked, or routed elsewhere), dropped"}}) {
    auto f = family(d.metric, d.help, prometheus::MetricType::Counter);
    prometheus::ClientMetric m;
    auto it = drops_.find(d.counter);
    m.counter.value = it == drops_.end() ? 0 : static_cast<double>(it->second);
    f.metric.push_back(m);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace nsegress::gateway
