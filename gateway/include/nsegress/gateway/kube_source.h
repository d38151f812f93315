// Desired state from the Kubernetes API (cluster mode): informers on
// EgressIPs, Namespaces and Pods; the state is kube::gatewayView() of their
// caches. Until every informer has listed once, load() fails, so the agent
// keeps the kernel as it found it (fail-static) instead of acting on a
// partial view. While the API server is unreachable the caches keep their
// last contents, so the data path stays as it was.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "nsegress/gateway/state_source.h"
#include "nsegress/kube/config.h"

namespace nsegress::kube {
class Informer;
}

namespace nsegress::gateway {

class KubeStateSource final : public DesiredStateSource {
 public:
  KubeStateSource(kube::KubeConfig cfg, std::string node);
  ~KubeStateSource() override;
  void start();
  Result<DesiredState> load() override;
  int watchFd() const override { return event_fd_; }
  void drain() override;
  std::string describe() const override;
  SourceHealth health() const override;

 private:
  std::string node_;
  int event_fd_ = -1;
  std::unique_ptr<kube::Informer> egressips_, namespaces_, pods_;
  std::set<std::string> last_warnings_;  // each warning is logged once, not per load
  std::atomic<uint64_t> warning_count_{0};
  uint64_t generation_ = 0;
  std::optional<DesiredState> last_;
};

}  // namespace nsegress::gateway
