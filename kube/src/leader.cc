#include "nsegress/kube/leader.h"
#include "nsegress/common/json.h"

#include <ctime>
#include <nlohmann/json.hpp>

namespace nsegress::kube {

using nlohmann::json;

std::string LeaderElector::microTime() const {
  const auto now = clock_.wallNow().time_since_epoch();
  const time_t secs = std::chrono::duration_cast<std::chrono::seconds>(now).count();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count() % 1000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(us));
  return std::string(buf) + frac;
}

LeaderElector::LeaderElector(Api& api, Clock& clock, LeaderOptions opts)
    : api_(api), clock_(clock), opts_(std::move(opts)) {}

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
  return dumpJson(json{{"apiVersion", "coordination.k8s.io/v1"},
                       {"kind", "Lease"},
                       {"metadata", meta},
                       {"spec", spec}});
}

namespace {
int64_t ns(Clock::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

bool LeaderElector::isLeader() const {
  const int64_t last = last_renew_.load();
  return last != 0 &&
         ns(clock_.now()) - last < std::chrono::nanoseconds(opts_.renew_deadline).count();
}

std::optional<Clock::TimePoint> LeaderElector::leadershipExpiry() const {
  const int64_t last = last_renew_.load();
  if (last == 0) return std::nullopt;
  return Clock::TimePoint(std::chrono::nanoseconds(last)) + opts_.renew_deadline;
}

void LeaderElector::tick() {
  const auto now = clock_.now();
  auto got = api_.request("GET", path());
  if (!got) return;  // unreachable: keep what we have; isLeader() expires by itself
  if (got->status == 404) {
    auto r = api_.request("POST", "/apis/coordination.k8s.io/v1/namespaces/" + opts_.ns + "/leases",
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
  auto lease = parseJsonOrDiscarded(got->body);
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
  auto r = api_.request("PUT", path(), body(opts_.identity, rv_, !mine));
  if (r && r->status == 200) {
    if (!mine) acquire_time_ = microTime();
    last_renew_ = ns(now);
    observed_holder_ = opts_.identity;
    auto updated = parseJsonOrDiscarded(r->body);
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
  auto got = api_.request("GET", path());
  if (!got || got->status != 200) return;
  auto lease = parseJsonOrDiscarded(got->body);
  if (!lease.is_object() || lease["spec"].value("holderIdentity", "") != opts_.identity) return;
  json spec = lease["spec"];
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  lease["spec"] = spec;
  (void)api_.request("PUT", path(), dumpJson(lease));
}

void runElection(LeaderElector& e, Clock& clock, Stopper& stop,
                 const std::function<void(bool)>& on_change) {
  bool was = false;
  while (!stop.requested()) {
    e.tick();
    bool now = e.isLeader();
    if (now != was) on_change(now);
    was = now;
    // Wake at the next retry, or when leadership would lapse, if sooner.
    auto next = clock.now() + e.options().retry_period;
    if (auto exp = e.leadershipExpiry(); exp && *exp < next) next = *exp;
    clock.sleepUntil(next, stop);
    now = e.isLeader();
    if (now != was) on_change(now);
    was = now;
  }
  e.release();
  if (was) on_change(false);
}

}  // namespace nsegress::kube
