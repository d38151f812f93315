#include "nsegress/gateway/kube_source.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nsegress/kube/gateway_view.h"
#include "nsegress/kube/informer.h"

namespace nsegress::gateway {

KubeStateSource::KubeStateSource(kube::KubeConfig cfg, std::string node)
    : node_(std::move(node)), event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  auto changed = [this] {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(event_fd_, &one, sizeof one);
  };
  egressips_ = std::make_unique<kube::Informer>(cfg, "/apis/nsegress.io/v1alpha1/egressips",
                                                kube::trimEgressIP, changed);
  namespaces_ =
      std::make_unique<kube::Informer>(cfg, "/api/v1/namespaces", kube::trimNamespace, changed);
  pods_ = std::make_unique<kube::Informer>(cfg, "/api/v1/pods", kube::trimPod, changed);
}

KubeStateSource::~KubeStateSource() {
  for (auto* i : {egressips_.get(), namespaces_.get(), pods_.get()}) i->stop();
  if (event_fd_ >= 0) ::close(event_fd_);
}

void KubeStateSource::start() {
  for (auto* i : {egressips_.get(), namespaces_.get(), pods_.get()}) i->start();
}

void KubeStateSource::drain() {
  uint64_t v;
  [[maybe_unused]] auto n = ::read(event_fd_, &v, sizeof v);
}

std::string KubeStateSource::describe() const {
  return "the Kubernetes API (node " + node_ + ")";
}

SourceHealth KubeStateSource::health() const {
  SourceHealth h;
  h.warnings = warning_count_;
  for (const auto* i : {egressips_.get(), namespaces_.get(), pods_.get()}) {
    const auto st = i->stats();
    h.synced = h.synced && i->synced();
    h.errors += st.errors;
    h.relists += st.relists_410;
  }
  return h;
}

Result<DesiredState> KubeStateSource::load() {
  std::string waiting;
  for (auto [name, inf] :
       {std::pair{"egressips", egressips_.get()}, std::pair{"namespaces", namespaces_.get()},
        std::pair{"pods", pods_.get()}})
    if (!inf->synced()) waiting += waiting.empty() ? name : std::string(", ") + name;
  if (!waiting.empty())
    return makeError(EAGAIN, "waiting for the first list from the API server: " + waiting);
  // Computed on the caches in place (no copies: ≈ 0.1 s saved per load at
  // 100k pods). Each informer's lock is held in a fixed order; informer
  // threads only ever take their own.
  kube::GatewayView v;
  egressips_->read([&](const auto& eips) {
    namespaces_->read([&](const auto& nss) {
      pods_->read([&](const auto& pods) { v = kube::gatewayView(node_, nss, pods, eips); });
    });
  });
  std::set<std::string> now(v.warnings.begin(), v.warnings.end());
  for (const auto& w : now)
    if (!last_warnings_.count(w)) spdlog::warn("{}", w);
  last_warnings_ = std::move(now);
  warning_count_ = last_warnings_.size();
  // The generation counts changes of content, so an unchanged view is not
  // reported as a new state.
  if (!last_ || !(last_->namespaces == v.state.namespaces)) ++generation_;
  v.state.generation = generation_;
  last_ = v.state;
  return std::move(v.state);
}

}  // namespace nsegress::gateway
