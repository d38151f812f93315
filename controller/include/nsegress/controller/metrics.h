// Prometheus metrics of the controller, partly computed from the View at
// scrape time (addresses by pool and state, namespaces by phase).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "nsegress/controller/controller.h"

namespace nsegress::controller {

class ControllerMetrics {
 public:
  explicit ControllerMetrics(const Controller& c);
  std::string text() const;  // exposition format
  prometheus::Counter& reconcile_ok;
  prometheus::Counter& reconcile_error;
  prometheus::Histogram& reconcile_seconds;

 private:
  ControllerMetrics(const Controller& c, std::shared_ptr<prometheus::Registry> r);
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> view_metrics_;
};

}  // namespace nsegress::controller
