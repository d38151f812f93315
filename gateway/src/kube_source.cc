#include "nsegress/gateway/kube_source.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nsegress/common/decode.h"
#include "nsegress/common/failover_roles.h"
#include "nsegress/common/gateway_view.h"

namespace nsegress::gateway {

KubeStateSource::KubeStateSource(kube::Api& api, Clock& clock, std::string node,
                                 KubeSourceOptions o)
    : node_(std::move(node)),
      event_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      o_(std::move(o)) {
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
  if (o_.failover) {
    pools_ = std::make_unique<kube::Informer<Pool>>(
        api, clock, "/apis/nsegress.io/v1alpha1/egresspools", decodePool, changed);
    leases_ = std::make_unique<kube::Informer<EgressLease>>(
        api, clock,
        "/apis/coordination.k8s.io/v1/namespaces/" + o_.controller_namespace +
            "/leases?labelSelector=" + kEgressLeaseLabel + "%3Dtrue",
        decodeEgressLease, changed);
    leader_ = std::make_unique<kube::Informer<std::string>>(
        api, clock,
        "/api/v1/namespaces/" + o_.controller_namespace +
            "/endpoints?fieldSelector=metadata.name%3D" + o_.controller_service,
        decodeLeaseServer, changed);
  }
}

std::vector<kube::InformerBase*> KubeStateSource::informers() const {
  std::vector<kube::InformerBase*> all{egressips_.get(), namespaces_.get(), pods_.get(),
                                       nodes_.get()};
  if (o_.failover) all.insert(all.end(), {pools_.get(), leases_.get(), leader_.get()});
  return all;
}

KubeStateSource::~KubeStateSource() {
  for (auto* i : informers()) i->stop();
}

void KubeStateSource::start() {
  for (auto* i : informers()) i->start();
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
  for (const kube::InformerBase* i : informers()) {
    const auto st = i->stats();
    h.synced = h.synced && i->connected();
    h.errors += st.errors;
    h.relists += st.relists_410;
  }
  return h;
}

Result<DesiredState> KubeStateSource::load() {
  std::string waiting;
  for (const kube::InformerBase* inf : informers())
    if (!inf->synced()) waiting += (waiting.empty() ? "" : ", ") + inf->path();
  if (!waiting.empty())
    return makeError(EAGAIN, "waiting for the first list from the API server: " + waiting);
  // Computed on the caches in place (no copies of 100k pods per load). Each
  // informer's lock is held only while it is read.
  GatewayViews views(static_cast<Seconds>(std::time(nullptr)));
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
  if (o_.failover) {
    // Roles by the controller's rules, over the same objects it reads.
    World w;
    w.failover = true;
    pools_->read([&](const auto& m) {
      for (const auto& [k, p] : m) w.pools[p.name] = p;
    });
    markOverlappingPools(w.pools);
    nodes_->read([&](const auto& m) {
      for (const auto& [k, n] : m) w.nodes[n.name] = n;
    });
    leases_->read([&](const auto& m) {
      for (const auto& [k, l] : m) w.leases[l.ip] = LeaseView{l.owner, l.epoch};
    });
    std::map<IpAddress, AddressRecord> ledger;
    egressips_->read([&](const auto& m) {
      for (const auto& [k, r] : m) ledger[r.ip] = r;
    });
    attachRoles(v.state, failoverRoles(w, ledger));
    leader_->read([&](const auto& m) {
      for (const auto& [k, server] : m) v.state.lease_server = server;
    });
  }
  // Objects skipped because they did not decode are warnings too.
  for (const kube::InformerBase* i : informers())
    for (const auto& [key, why] : i->malformed())
      v.warnings.push_back(i->path() + " " + key + ": skipped: " + why);
  std::set<std::string> now(v.warnings.begin(), v.warnings.end());
  for (const auto& w : now)
    if (!last_warnings_.count(w)) spdlog::warn("{}", w);
  last_warnings_ = std::move(now);
  warning_count_ = last_warnings_.size();
  // The generation counts changes of content, so an unchanged view is not
  // reported as a new state.
  if (!last_ ||
      !(last_->namespaces == v.state.namespaces && last_->nodes == v.state.nodes &&
        last_->addresses == v.state.addresses && last_->lease_server == v.state.lease_server))
    ++generation_;
  v.state.generation = generation_;
  last_ = v.state;
  return std::move(v.state);
}

}  // namespace nsegress::gateway
