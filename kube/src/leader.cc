#include "nsegress/kube/leader.h"

#include <ctime>
#include <nlohmann/json.hpp>

namespace nsegress::kube {

using nlohmann::json;

namespace {
std::string microTime() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", gmtime(&ts.tv_sec));
  std::string us = std::to_string(ts.tv_nsec / 1000);
  return std::string(buf) + "." + std::string(6 - std::min<size_t>(6, us.size()), '0') + us + "Z";
}
}  // namespace

LeaderElector::LeaderElector(Client& client, LeaderOptions opts)
    : client_(client), opts_(std::move(opts)) {}

std::string LeaderElector::path() const {
  return "/apis/coordination.k8s.io/v1/namespaces/" + opts_.ns + "/leases/" + opts_.name;
}

std::string LeaderElector::body(const std::string& holder, const std::string& rv,
                                bool acquire) const {
  json spec{
      {"holderIdentity", holder},
      {"leaseDurationSeconds",
       std::max<int64_t>(
           1, std::chrono::duration_cast<std::chrono::seconds>(opts_.lease_duration).count())},
      {"renewTime", microTime()},
      {"leaseTransitions", transitions_ + (acquire ? 1 : 0)}};
  spec["acquireTime"] = acquire ? microTime() : acquire_time_;
  json meta{{"name", opts_.name}, {"namespace", opts_.ns}};
  if (!rv.empty()) meta["resourceVersion"] = rv;
  return json{{"apiVersion", "coordination.k8s.io/v1"},
              {"kind", "Lease"},
              {"metadata", meta},
              {"spec", spec}}
      .dump();
}

namespace {
int64_t ns(LeaderElector::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

bool LeaderElector::isLeader() const {
  const int64_t last = last_renew_.load();
  return last != 0 &&
         ns(Clock::now()) - last < std::chrono::nanoseconds(opts_.renew_deadline).count();
}

void LeaderElector::tick() {
  const auto now = Clock::now();
  auto got = client_.request("GET", path());
  if (!got) return;  // unreachable: keep what we have; isLeader() expires by itself
  if (got->status == 404) {
    auto r =
        client_.request("POST", "/apis/coordination.k8s.io/v1/namespaces/" + opts_.ns + "/leases",
                        body(opts_.identity, "", true));
    if (r && r->status == 201) {
      last_renew_ = ns(now);
      observed_holder_ = opts_.identity;
      acquire_time_ = microTime();
      transitions_ = 0;
    }
    return;
  }
  if (got->status != 200) return;
  auto lease = json::parse(got->body, nullptr, false);
  if (!lease.is_object()) return;
  const auto& spec = lease.value("spec", json::object());
  const std::string holder = spec.value("holderIdentity", "");
  const std::string record = holder + "|" + spec.value("renewTime", "") + "|" +
                             std::to_string(spec.value("leaseTransitions", 0));
  rv_ = lease["metadata"].value("resourceVersion", "");
  transitions_ = spec.value("leaseTransitions", 0);
  if (record != observed_record_) {
    observed_record_ = record;
    observed_at_ = now;
  }
  observed_holder_ = holder;
  const bool mine = holder == opts_.identity;
  const bool expired = holder.empty() || now - observed_at_ > opts_.lease_duration;
  if (!mine && !expired) {
    last_renew_ = 0;
    return;
  }
  if (mine) acquire_time_ = spec.value("acquireTime", "");
  // Optimistic concurrency: the update carries the resourceVersion we read;
  // if another replica wrote in between, the API server answers 409.
  auto r = client_.request("PUT", path(), body(opts_.identity, rv_, !mine));
  if (r && r->status == 200) {
    if (!mine) acquire_time_ = microTime();
    last_renew_ = ns(now);
    observed_holder_ = opts_.identity;
    auto updated = json::parse(r->body, nullptr, false);
    if (updated.is_object()) {
      const auto& s = updated.value("spec", json::object());
      observed_record_ = s.value("holderIdentity", "") + "|" + s.value("renewTime", "") + "|" +
                         std::to_string(s.value("leaseTransitions", 0));
      observed_at_ = now;
    }
  }
}

void LeaderElector::release() {
  if (!isLeader()) return;
  last_renew_ = 0;
  auto got = client_.request("GET", path());
  if (!got || got->status != 200) return;
  auto lease = json::parse(got->body, nullptr, false);
  if (!lease.is_object() || lease["spec"].value("holderIdentity", "") != opts_.identity) return;
  json spec = lease["spec"];
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  lease["spec"] = spec;
  (void)client_.request("PUT", path(), lease.dump());
}

}  // namespace nsegress::kube
