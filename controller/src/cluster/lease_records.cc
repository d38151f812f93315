#include "nsegress/controller/cluster/lease_records.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "nsegress/common/decode.h"
#include "nsegress/common/json.h"
#include "nsegress/common/parallel.h"

namespace nsegress::controller::cluster {

using nlohmann::json;

namespace {
std::string excerpt(const kube::Response& r) {
  return "HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200);
}
}  // namespace

Result<std::map<IpAddress, LeaseView>> KubeLeaseRecords::load() {
  const std::string path = "/apis/coordination.k8s.io/v1/namespaces/" + ns_ +
                           "/leases?labelSelector=" + kEgressLeaseLabel + "%3Dtrue";
  auto r = api_.request("GET", path);
  if (!r) return r.error();
  if (r->status != 200) return makeError(EIO, "list egress Leases: " + excerpt(*r));
  auto doc = parseJson(r->body, JsonLimits{64u << 20, 64, 10'000'000});
  if (!doc || !doc->is_object() || !doc->contains("items") || !(*doc)["items"].is_array())
    return makeError(EIO, "list egress Leases: not a list");
  std::map<IpAddress, LeaseView> out;
  std::lock_guard l(mu_);
  versions_.clear();
  for (const auto& item : (*doc)["items"]) {
    auto lease = decodeEgressLease(item);
    if (!lease)
      return makeError(EINVAL, "Lease " + ns_ + "/" + describeObject(item) + ": " +
                                   lease.error().message +
                                   " (fix or delete it only if no gateway runs)");
    out[lease->ip] = LeaseView{lease->owner, lease->epoch};
    versions_[lease->ip] = lease->version;
  }
  return out;
}

Status KubeLeaseRecords::write(const IpAddress& ip, const LeaseView& v) {
  std::string version;
  {
    std::lock_guard l(mu_);
    if (auto it = versions_.find(ip); it != versions_.end()) version = it->second;
  }
  json meta{{"name", egressLeaseName(ip)},
            {"namespace", ns_},
            {"labels", {{kEgressLeaseLabel, "true"}}},
            {"annotations", {{kEgressLeaseAddress, ip.str()}}}};
  if (!version.empty()) meta["resourceVersion"] = version;
  json lease{{"apiVersion", "coordination.k8s.io/v1"},
             {"kind", "Lease"},
             {"metadata", meta},
             {"spec", {{"holderIdentity", v.owner}, {"leaseTransitions", v.epoch}}}};
  const std::string base = "/apis/coordination.k8s.io/v1/namespaces/" + ns_ + "/leases";
  auto r = version.empty() ? api_.request("POST", base, dumpJson(lease))
                           : api_.request("PUT", base + "/" + egressLeaseName(ip), dumpJson(lease));
  if (!r) return r.error();
  if (r->status == 409)
    return makeError(ESTALE, "Lease " + egressLeaseName(ip) + " was changed by another writer");
  if (r->status != 200 && r->status != 201)
    return makeError(EIO, "write Lease " + egressLeaseName(ip) + ": " + excerpt(*r));
  auto back = parseJson(r->body, JsonLimits{1u << 20, 64, 100'000});
  std::string rv;
  if (back && back->is_object()) rv = (*back)["metadata"].value("resourceVersion", "");
  std::lock_guard l(mu_);
  versions_[ip] = rv;
  return okStatus();
}

Status KubeLeaseRecords::save(const std::map<IpAddress, LeaseView>& all,
                              const std::set<IpAddress>& changed) {
  std::vector<std::pair<IpAddress, LeaseView>> todo;
  for (const auto& ip : changed)
    if (auto it = all.find(ip); it != all.end() && it->second.epoch > 1)
      todo.emplace_back(ip, it->second);
  if (auto e = runParallel(todo.size(), kParallelWrites,
                           [&](size_t i) { return write(todo[i].first, todo[i].second); }))
    return *e;
  return okStatus();
}

}  // namespace nsegress::controller::cluster
