#include "nsegress/controller/metrics.h"

#include <prometheus/text_serializer.h>

namespace nsegress::controller {

namespace {
class ViewMetrics : public prometheus::Collectable {
 public:
  explicit ViewMetrics(const Controller& c) : c_(c) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    auto v = c_.view();
    auto fam = [](std::string n, std::string h) {
      prometheus::MetricFamily f;
      f.name = std::move(n);
      f.help = std::move(h);
      f.type = prometheus::MetricType::Gauge;
      return f;
    };
    auto addrs = fam("nsegress_controller_addresses", "Ledger addresses by pool and state");
    auto size =
        fam("nsegress_controller_pool_size", "Usable addresses in a pool (after exclusions)");
    auto nss = fam("nsegress_controller_namespaces", "Annotated namespaces by phase");
    auto errs =
        fam("nsegress_controller_manifest_errors", "Manifest errors now (last good objects kept)");
    std::map<std::pair<std::string, std::string>, double> by;
    for (const auto& [pn, p] : v->pools)
      for (const char* st : {"Assigned", "PendingFirewallCleanup", "Quarantined", "Free"})
        by[{pn, st}] = 0;
    for (const auto& [ip, r] : v->ledger) by[{r.pool, toString(r.state)}]++;
    for (const auto& [k, n] : by) {
      prometheus::ClientMetric m;
      m.label = {{"pool", k.first}, {"state", k.second}};
      m.gauge.value = n;
      addrs.metric.push_back(m);
    }
    for (const auto& [pn, p] : v->pools) {
      prometheus::ClientMetric m;
      m.label = {{"pool", pn}};
      m.gauge.value = p.invalid ? 0 : static_cast<double>(p.size());
      size.metric.push_back(m);
    }
    std::map<std::string, double> phases = {{"Assigned", 0}, {"Pending", 0}, {"Refused", 0}};
    for (const auto& [n, s] : v->statuses) phases[toString(s.phase)]++;
    for (const auto& [ph, n] : phases) {
      prometheus::ClientMetric m;
      m.label = {{"phase", ph}};
      m.gauge.value = n;
      nss.metric.push_back(m);
    }
    prometheus::ClientMetric e;
    e.gauge.value = static_cast<double>(v->errors.size());
    errs.metric.push_back(e);
    auto held = fam("nsegress_controller_held",
                    "1 while changes are held: the source is not a complete read, or releases wait "
                    "for an operator's confirmation");
    auto held_rel = fam("nsegress_controller_releases_held",
                        "Releases waiting for confirmation (nsegressctl confirm-release)");
    auto not_ready = fam("nsegress_controller_not_ready",
                         "1 while the controller cannot apply changes (e.g. the ledger cannot "
                         "be written)");
    prometheus::ClientMetric h, hr, nr;
    h.gauge.value = v->hold ? 1 : 0;
    hr.gauge.value = v->hold ? static_cast<double>(v->hold->namespaces.size()) : 0;
    nr.gauge.value = v->not_ready.empty() ? 0 : 1;
    held.metric.push_back(h);
    held_rel.metric.push_back(hr);
    not_ready.metric.push_back(nr);
    // The decommission handshake: how long the oldest released address of
    // each pool has waited for the firewall side's acknowledgement.
    auto oldest = fam("nsegress_controller_firewall_cleanup_oldest_seconds",
                      "Seconds the oldest address of a pool has waited in PendingFirewallCleanup "
                      "(0: none waits); acknowledge with nsegressctl ack");
    auto onboarding = fam("nsegress_controller_onboarding_addresses",
                          "Addresses published in the feeds but not yet used (onboarding)");
    std::map<std::string, double> oldest_by, onboarding_by;
    for (const auto& [pn, p] : v->pools) oldest_by[pn] = onboarding_by[pn] = 0;
    for (const auto& [ip, r] : v->ledger) {
      if (r.state == AddressState::kPendingFirewallCleanup)
        oldest_by[r.pool] = std::max(
            oldest_by[r.pool], static_cast<double>(std::max<Seconds>(0, v->at - r.released_at)));
      if (r.state == AddressState::kAssigned && !r.usable(v->at)) onboarding_by[r.pool]++;
    }
    for (auto [f, m] : {std::pair{&oldest, &oldest_by}, std::pair{&onboarding, &onboarding_by}})
      for (const auto& [pn, n] : *m) {
        prometheus::ClientMetric c;
        c.label = {{"pool", pn}};
        c.gauge.value = n;
        f->metric.push_back(c);
      }
    // Attribution by port: blocks held per pool, and pods that found none
    // (fail-closed until a block is free).
    auto blocks_held = fam("nsegress_controller_port_blocks_held",
                           "Port blocks held by pods (attribution by port), per pool");
    auto blocks_per = fam("nsegress_controller_port_blocks_per_address",
                          "Port blocks an address of the pool is cut into (0: no port blocks)");
    auto starved = fam("nsegress_controller_pods_without_port_block",
                       "Pods of a port-block pool that found no free block (fail-closed)");
    for (const auto& [pn, u] : v->block_usage)
      for (auto [f, n] : {std::pair{&blocks_held, u.held}, std::pair{&blocks_per, u.per_address},
                          std::pair{&starved, u.starved}}) {
        prometheus::ClientMetric c;
        c.label = {{"pool", pn}};
        c.gauge.value = static_cast<double>(n);
        f->metric.push_back(c);
      }
    return {addrs,     size,   nss,        errs,        held,       held_rel,
            not_ready, oldest, onboarding, blocks_held, blocks_per, starved};
  }

 private:
  const Controller& c_;
};
}  // namespace

ControllerMetrics::ControllerMetrics(const Controller& c)
    : ControllerMetrics(c, std::make_shared<prometheus::Registry>()) {}

ControllerMetrics::ControllerMetrics(const Controller& c, std::shared_ptr<prometheus::Registry> r)
    : driver(DriverMetrics::create(*r, "nsegress_controller")),
      leader(prometheus::BuildGauge()
                 .Name("nsegress_controller_leader")
                 .Help("1 while this replica is the leader (standalone: always)")
                 .Register(*r)
                 .Add({})),
      ledger_conflicts(prometheus::BuildCounter()
                           .Name("nsegress_controller_ledger_conflicts_total")
                           .Help("Ledger writes refused because the object changed since it "
                                 "was read (another writer; cluster mode)")
                           .Register(*r)
                           .Add({})),
      event_write_failures(prometheus::BuildCounter()
                               .Name("nsegress_controller_event_write_failures_total")
                               .Help("Kubernetes Events that could not be written")
                               .Register(*r)
                               .Add({})),
      registry_(std::move(r)),
      view_metrics_(std::make_shared<ViewMetrics>(c)) {}

void ControllerMetrics::addCollectable(std::shared_ptr<prometheus::Collectable> c) {
  std::lock_guard l(more_mu_);
  more_.push_back(std::move(c));
}

std::string ControllerMetrics::text() const {
  auto fams = registry_->Collect();
  auto more = view_metrics_->Collect();
  fams.insert(fams.end(), more.begin(), more.end());
  {
    std::lock_guard l(more_mu_);
    for (const auto& c : more_) {
      auto f = c->Collect();
      fams.insert(fams.end(), f.begin(), f.end());
    }
  }
  if (denied_) {
    prometheus::MetricFamily f{"nsegress_controller_api_denied_total",
                               "Requests the API server refused for their credentials (401: the "
                               "token is not accepted; 403: RBAC does not allow it)",
                               prometheus::MetricType::Counter,
                               {}};
    for (const auto& [key, n] : denied_()) {
      prometheus::ClientMetric m;
      m.label = {{"code", key.substr(0, 3)}, {"request", key.size() > 4 ? key.substr(4) : ""}};
      m.counter.value = static_cast<double>(n);
      f.metric.push_back(std::move(m));
    }
    fams.push_back(std::move(f));
  }
  if (requests_) {
    prometheus::MetricFamily f{"nsegress_controller_api_requests_total",
                               "Requests (and watches) sent to the Kubernetes API server",
                               prometheus::MetricType::Counter,
                               {}};
    prometheus::ClientMetric m;
    m.counter.value = static_cast<double>(requests_());
    f.metric.push_back(std::move(m));
    fams.push_back(std::move(f));
  }
  return prometheus::TextSerializer().Serialize(fams);
}

}  // namespace nsegress::controller
