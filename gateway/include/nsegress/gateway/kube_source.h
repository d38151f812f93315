// Desired state from the Kubernetes API (cluster mode): typed informers on
// EgressIPs, Namespaces, Pods and Nodes (underlay addresses, for steering); the state is this
// node's GatewayView (common/gateway_view.h) of their caches. Until every informer has listed once,
// load() fails with EAGAIN, so the agent keeps the kernel as it found it (fail-static) instead of
// acting on a partial view. While the API server is unreachable the caches keep their last
// contents, so the data path stays as it was.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "nsegress/common/clock.h"
#include "nsegress/common/fd.h"
#include "nsegress/common/objects.h"
#include "nsegress/gateway/state_source.h"
#include "nsegress/kube/api.h"
#include "nsegress/kube/informer.h"

namespace nsegress::gateway {

struct KubeSourceOptions {
  // Failover: also read pools, the per-address ownership Leases and the
  // controller leader's Endpoints (in `controller_namespace`), to give the
  // state its address roles (common/failover_roles.h, the controller's
  // rules) and the leader's lease server.
  bool failover = false;
  std::string controller_namespace = "nsegress-system";
  std::string controller_service = "nsegress-controller";
};

class KubeStateSource final : public DesiredStateSource {
 public:
  KubeStateSource(kube::Api& api, Clock& clock, std::string node, KubeSourceOptions o = {});
  ~KubeStateSource() override;
  void start();
  Result<DesiredState> load() override;
  int watchFd() const override { return event_fd_.get(); }
  void drain() override;
  std::string describe() const override;
  SourceHealth health() const override;

 private:
  std::string node_;
  Fd event_fd_;
  std::unique_ptr<kube::Informer<AddressRecord>> egressips_;
  std::unique_ptr<kube::Informer<Namespace>> namespaces_;
  std::unique_ptr<kube::Informer<Pod>> pods_;
  std::unique_ptr<kube::Informer<Node>> nodes_;
  KubeSourceOptions o_;
  std::unique_ptr<kube::Informer<Pool>> pools_;          // failover only
  std::unique_ptr<kube::Informer<EgressLease>> leases_;  // failover only
  std::unique_ptr<kube::Informer<std::string>> leader_;  // failover only
  std::vector<kube::InformerBase*> informers() const;
  std::set<std::string> last_warnings_;  // each warning is logged once, not per load
  std::atomic<uint64_t> warning_count_{0};
  uint64_t generation_ = 0;
  std::optional<DesiredState> last_;
};

}  // namespace nsegress::gateway
