#include "nsegress/controller/cluster/write_back.h"
#include "nsegress/common/json.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace nsegress::controller::cluster {

using nlohmann::json;

std::string releaseFinalizerPatch(const std::vector<std::string>& finalizers) {
  json ops = json::array();
  for (size_t i = finalizers.size(); i-- > 0;) {  // from the end: earlier indices stay valid
    if (finalizers[i] != kReleaseFinalizer) continue;
    const std::string path = "/metadata/finalizers/" + std::to_string(i);
    ops.push_back({{"op", "test"}, {"path", path}, {"value", kReleaseFinalizer}});
    ops.push_back({{"op", "remove"}, {"path", path}});
  }
  return ops.empty() ? "" : dumpJson(ops);
}

std::optional<std::string> namespacePatch(const Namespace& ns, const std::string& want) {
  json patch_meta = json::object();
  auto ait = ns.annotations.find(kAssignedAnnotation);
  const std::string have = ait == ns.annotations.end() ? "" : ait->second;
  if (want != have)
    patch_meta["annotations"][kAssignedAnnotation] = want.empty() ? json(nullptr) : json(want);
  std::vector<std::string> fins = ns.finalizers;
  if (ns.requestsEgress() && std::find(fins.begin(), fins.end(), kReleaseFinalizer) == fins.end()) {
    fins.push_back(kReleaseFinalizer);
    patch_meta["finalizers"] = fins;
  }
  if (patch_meta.empty()) return std::nullopt;
  // Conditional on the version we saw: never overwrite someone else's edit.
  patch_meta["resourceVersion"] = ns.resource_version;
  return dumpJson(json{{"metadata", patch_meta}});
}

WriteBackStats writeBack(kube::Api& api, const View& v,
                         const std::map<std::string, Namespace>& namespaces,
                         const std::map<std::string, std::string>& already) {
  WriteBackStats st;
  std::set<std::string> holders;
  for (const auto& [ip, r] : v.ledger)
    if (r.state == AddressState::kAssigned) holders.insert(r.ns);
  auto failed = [&](const std::string& ns, const char* what, const Result<kube::Response>& r) {
    ++st.failures;
    spdlog::warn("namespace {}: {} failed: {}", ns, what,
                 r ? r->body.substr(0, 200) : r.error().message);
  };
  for (const auto& [name, ns] : namespaces) {
    std::vector<std::string> fins = ns.finalizers;
    const bool has_fin = std::find(fins.begin(), fins.end(), kReleaseFinalizer) != fins.end();
    if (ns.deleting) {
      if (!has_fin || holders.count(name)) continue;
      auto r = api.request("PATCH", "/api/v1/namespaces/" + name, releaseFinalizerPatch(fins),
                           "application/json-patch+json");
      // 422/409: the list changed since it was read; the watch brings the
      // new version and the next pass retries.
      if (r && r->status == 200) ++st.finalizers_removed;
      if (!r || (r->status != 200 && r->status != 404 && r->status != 409 && r->status != 422))
        failed(name, "finalizer removal", r);
      continue;
    }
    auto sit = v.statuses.find(name);
    const std::string want =
        sit != v.statuses.end() && sit->second.phase == Phase::kAssigned && sit->second.ip
            ? sit->second.ip->str()
            : "";
    if (auto s = already.find(name); s != already.end() && s->second == want) continue;
    auto ait = ns.annotations.find(kAssignedAnnotation);
    const std::string have = ait == ns.annotations.end() ? "" : ait->second;
    auto patch = namespacePatch(ns, want);
    if (!patch) continue;
    auto r =
        api.request("PATCH", "/api/v1/namespaces/" + name, *patch, "application/merge-patch+json");
    if (r && r->status == 200) {
      st.annotations += want != have;
      st.finalizers_added += ns.requestsEgress() && !has_fin;
    }
    if (!r || (r->status != 200 && r->status != 404 && r->status != 409))
      failed(name, "write-back", r);
  }
  return st;
}

bool publishLeaderEndpoint(kube::Api& api, const LeaderEndpoint& e, bool want) {
  const std::string path = "/api/v1/namespaces/" + e.ns + "/endpoints/" + e.name;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto got = api.request("GET", path);
    if (!got || got->status != 200) {
      spdlog::warn("endpoints {}/{}: not read: {}", e.ns, e.name,
                   got ? got->body.substr(0, 200) : got.error().message);
      return false;
    }
    auto cur = parseJsonOrDiscarded(got->body);
    if (!cur.is_object()) return false;
    const json& subsets = cur.contains("subsets") ? cur["subsets"] : json();
    json ports = json::array();
    if (e.port) ports.push_back({{"name", "http"}, {"port", e.port}, {"protocol", "TCP"}});
    if (e.https_port)
      ports.push_back({{"name", "https"}, {"port", e.https_port}, {"protocol", "TCP"}});
    if (e.lease_port)
      ports.push_back({{"name", "lease"}, {"port", e.lease_port}, {"protocol", "UDP"}});
    json mine =
        json::array({{{"addresses",
                       {{{"ip", e.ip},
                         {"targetRef", {{"kind", "Pod"}, {"namespace", e.ns}, {"name", e.pod}}}}}},
                      {"ports", ports}}});
    bool listed = false;
    if (subsets.is_array())
      for (const auto& s : subsets)
        if (s.contains("addresses") && s["addresses"].is_array())
          for (const auto& a : s["addresses"]) listed |= a.is_object() && a.value("ip", "") == e.ip;
    json want_subsets = want ? mine : json::array();
    if (want ? subsets == mine : !listed) return true;
    json put = cur;
    put["subsets"] = want_subsets;
    auto r = api.request("PUT", path, dumpJson(put));  // carries metadata.resourceVersion
    if (r && r->status == 200) return true;
    if (r && r->status == 409) continue;  // changed since read: read again
    spdlog::warn("endpoints {}/{}: leader entry not {}: {}", e.ns, e.name, want ? "set" : "removed",
                 r ? r->body.substr(0, 200) : r.error().message);
    return false;
  }
  return false;
}

void writePoolStatus(kube::Api& api, const View& v, std::map<std::string, WrittenPool>& written) {
  const std::string now = formatTime(v.at);
  for (const auto& [name, u] : poolUsage(v.pools, v.ledger)) {
    auto prev = written.find(name);
    if (prev != written.end() && prev->second.usage == u) continue;
    const bool same_ready =
        prev != written.end() && prev->second.usage.invalid.empty() == u.invalid.empty();
    const std::string since = same_ready ? prev->second.ready_since : now;
    json cond{{"type", "Ready"},
              {"status", u.invalid.empty() ? "True" : "False"},
              {"reason", u.invalid.empty() ? "Valid" : "InvalidSpec"},
              {"message", u.invalid.empty() ? std::to_string(u.free) + " of " +
                                                  std::to_string(u.size) + " addresses free"
                                            : u.invalid.substr(0, 1024)},
              {"lastTransitionTime", since}};
    json status{{"size", u.size},
                {"assigned", u.assigned},
                {"quarantined", u.quarantined},
                {"pendingCleanup", u.pending_cleanup},
                {"free", u.free},
                {"conditions", json::array({cond})}};
    auto r = api.request("PATCH", "/apis/nsegress.io/v1alpha1/egresspools/" + name + "/status",
                         dumpJson(json{{"status", status}}), "application/merge-patch+json");
    if (r && (r->status == 200 || r->status == 404)) {
      written[name] = WrittenPool{u, since};
    } else {
      spdlog::warn("pool {}: status not written: {}", name,
                   r ? r->body.substr(0, 200) : r.error().message);
    }
  }
}

}  // namespace nsegress::controller::cluster
