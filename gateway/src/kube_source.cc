#include "nsegress/gateway/kube_source.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nsegress/common/decode.h"
#include "nsegress/common/gateway_view.h"

namespace nsegress::gateway {

KubeStateSource::KubeStateSource(kube::Api& api, Clock& clock, std::string node)
    : node_(std::move(node)), event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  auto changed = [this] {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(event_fd_.get(), &one, sizeof one);
  };
  egressips_ = std::make_unique<kube::Informer<AddressRecord>>(
      api, clock, "/apis/nsegress.io/v1alpha1/egressips", decodeEgressIP, changed);
  namespaces_ = std::make_unique<kube::Informer<Namespace>>(api, clock, "/api/v1/namespaces",
                                                            decodeNamespace, changed);
  pods_ = std::make_unique<kube::Informer<Pod>>(api, clock, "/api/v1/pods", decodePod, changed);
  nodes_ = std::make_unique<kube::Informer<Node>>(api, clock, "/api/v1/nodes", decodeNode, changed);
}

KubeStateSource::~KubeStateSource() {
  egressips_->stop();
  namespaces_->stop();
  pods_->stop();
  nodes_->stop();
}

void KubeStateSource::start() {
  egressips_->start();
  namespaces_->start();
  pods_->start();
  nodes_->start();
}

void KubeStateSource::drain() {
  uint64_t v;
  [[maybe_unused]] auto n = ::read(event_fd_.get(), &v, sizeof v);
}

std::string KubeStateSource::describe() const {
  return "the Kubernetes API (node " + node_ + ")";
}

SourceHealth KubeStateSource::health() const {
  SourceHealth h;
  h.warnings = warning_count_;
  for (const kube::InformerBase* i : {static_cast<kube::InformerBase*>(egressips_.get()),
                                      static_cast<kube::InformerBase*>(namespaces_.get()),
                                      static_cast<kube::InformerBase*>(pods_.get()),
                                      static_cast<kube::InformerBase*>(nodes_.get())}) {
    const auto st = i->stats();
    h.synced = h.synced && i->connected();
    h.errors += st.errors;
    h.relists += st.relists_410;
  }
  return h;
}

Result<DesiredState> KubeStateSource::load() {
  std::string waiting;
  for (auto [name, inf] :
       {std::pair<const char*, kube::InformerBase*>{"egressips", egressips_.get()},
        {"namespaces", namespaces_.get()},
        {"pods", pods_.get()},
        {"nodes", nodes_.get()}})
    if (!inf->synced()) waiting += waiting.empty() ? name : std::string(", ") + name;
  if (!waiting.empty())
    return makeError(EAGAIN, "waiting for the first list from the API server: " + waiting);
  // Computed on the caches in place (no copies of 100k pods per load). Each
  // informer's lock is held only while it is read.
  GatewayViews views;
  namespaces_->read([&](const auto& m) {
    for (const auto& [k, ns] : m) views.addNamespace(ns);
  });
  egressips_->read([&](const auto& m) {
    for (const auto& [k, r] : m) views.addRecord(r);
  });
  pods_->read([&](const auto& m) {
    for (const auto& [k, p] : m) views.addPod(p);
  });
  nodes_->read([&](const auto& m) {
    for (const auto& [k, n] : m) views.addNode(n);
  });
  GatewayView v = views.forNode(node_);
  // Objects skipped because they did not decode are warnings too.
  for (const kube::InformerBase* i : {static_cast<kube::InformerBase*>(egressips_.get()),
                                      static_cast<kube::InformerBase*>(namespaces_.get()),
                                      static_cast<kube::InformerBase*>(pods_.get()),
                                      static_cast<kube::InformerBase*>(nodes_.get())})
    for (const auto& [key, why] : i->malformed())
      v.warnings.push_back(i->path() + " " + key + ": skipped: " + why);
  std::set<std::string> now(v.warnings.begin(), v.warnings.end());
  for (const auto& w : now)
    if (!last_warnings_.count(w)) spdlog::warn("{}", w);
  last_warnings_ = std::move(now);
  warning_count_ = last_warnings_.size();
  // The generation counts changes of content, so an unchanged view is not
  // reported as a new state.
  if (!last_ || !(last_->namespaces == v.state.namespaces && last_->nodes == v.state.nodes))
    ++generation_;
  v.state.generation = generation_;
  last_ = v.state;
  return std::move(v.state);
}

}  // namespace nsegress::gateway
