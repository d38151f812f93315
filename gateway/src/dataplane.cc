#include <algorithm>

#include "nsegress/gateway/dataplane.h"

namespace nsegress::gateway {

Result<ReconcileOutcome> Dataplane::reconcile(const DesiredState& desired, bool full) {
  ReconcileOutcome out;
  const bool read = full || std::any_of(providers_.begin(), providers_.end(),
                                        [](const Provider* p) { return !p->hasModel(); });
  auto fail = [&](const Provider& p, const Error& e) -> Error {
    for (auto* q : providers_) q->dropModel();  // read the kernel again next time
    return makeError(e.code, std::string(p.name()) + ": " + e.message);
  };
  if (read) {
    for (auto* p : providers_) p->dropModel();
    for (auto* p : providers_)
      if (auto r = p->observe(); !r) return fail(*p, r.error());
    out.observed_kernel = true;
  }
  for (auto* p : providers_)
    if (auto r = p->install(desired, out.stats); !r) return fail(*p, r.error());
  for (auto it = providers_.rbegin(); it != providers_.rend(); ++it)
    if (auto r = (*it)->retire(desired, out.stats); !r) return fail(**it, r.error());
  return out;
}

NodeDataplane::NodeDataplane(Ports p, std::optional<SteerConfig> steer)
    : session_(p.nft),
      table_(session_),
      addresses_(session_, p.addresses, p.announcer, p.conntrack),
      steer_cfg_(std::move(steer)),
      snat_(session_, p.conntrack, steer_cfg_ && p.routes ? &*steer_cfg_ : nullptr) {
  dp_.add(table_);
  dp_.add(addresses_);
  // Steering installs before snat (a pod is marked for its gateway before
  // its fail-closed entry goes) and retires after it (a pod is held again
  // before its mark goes).
  if (steer_cfg_ && p.routes) {
    steer_.emplace(session_, *p.routes, p.conntrack, *steer_cfg_);
    dp_.add(*steer_);
  }
  dp_.add(snat_);
}

Result<ReconcileOutcome> NodeDataplane::reconcile(const DesiredState& desired, bool full) {
  // Counters as read before the changes (the read is the first step).
  auto r = dp_.reconcile(desired, full);
  if (r && r->observed_kernel && session_.hasModel()) {
    r->counters = countersByNamespace(session_.model());
    for (const char* name :
         {kBlockedCounter, kSpoofedCounter, kInboundCounter, kTunnelForeignCounter,
          kSteerSpoofedCounter, kUplinkSpoofedCounter, kUnsteeredCounter})
      if (auto it = session_.model().counters.find(name); it != session_.model().counters.end())
        r->drops[name] = it->second.first;
  }
  return r;
}

std::map<std::string, NamespaceCounters> countersByNamespace(const ObservedNft& nft) {
  std::map<std::string, NamespaceCounters> out;
  for (const auto& [name, v] : nft.counters) {
    if (name.starts_with("tx-")) {
      auto& c = out[name.substr(3)];
      c.tx_packets = v.first;
      c.tx_bytes = v.second;
    } else if (name.starts_with("drop-")) {
      auto& c = out[name.substr(5)];
      c.drop_packets = v.first;
      c.drop_bytes = v.second;
    }
  }
  return out;
}

}  // namespace nsegress::gateway
