// Prometheus metrics of the controller, partly computed from the View at
// scrape time (addresses by pool and state, namespaces by phase).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "nsegress/common/reconcile_driver.h"
#include "nsegress/controller/controller.h"

namespace nsegress::controller {

class ControllerMetrics {
 public:
  explicit ControllerMetrics(const Controller& c);
  std::string text() const;  // exposition format
  // nsegress_controller_reconcile_total{result}, nsegress_controller_reconcile_seconds
  DriverMetrics driver;
  // Cluster mode (standalone: leader stays 1, the others 0).
  prometheus::Gauge& leader;                  // this replica leads (0/1)
  prometheus::Counter& ledger_conflicts;      // writes the API server refused (stale version)
  prometheus::Counter& event_write_failures;  // Events that could not be written
  // Cluster mode: requests the API server refused for their credentials,
  // "<code> <verb> <resource>" -> count (kube::Client::denied()), read at
  // scrape time: nsegress_controller_api_denied_total{code,request}.
  void setDenied(std::function<std::map<std::string, uint64_t>()> f) { denied_ = std::move(f); }
  // Cluster mode: requests sent to the API server (requests and watches),
  // nsegress_controller_api_requests_total.
  void setRequests(std::function<uint64_t()> f) { requests_ = std::move(f); }
  // More families, collected at every scrape (e.g. the HTTP server's).
  void addCollectable(std::shared_ptr<prometheus::Collectable> c);

 private:
  std::function<std::map<std::string, uint64_t>()> denied_;
  std::function<uint64_t()> requests_;
  ControllerMetrics(const Controller& c, std::shared_ptr<prometheus::Registry> r);
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> view_metrics_;
  mutable std::mutex more_mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> more_;
};

}  // namespace nsegress::controller
