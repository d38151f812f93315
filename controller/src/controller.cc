#include "nsegress/controller/controller.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nsegress/common/file.h"

namespace nsegress::controller {

Controller::Controller(LedgerStore& store, Clock clock, std::string gateway_state_dir)
    : store_(store),
      clock_(std::move(clock)),
      state_dir_(std::move(gateway_state_dir)),
      view_(std::make_shared<View>()) {}

Status Controller::start() {
  auto l = store_.load();
  if (!l) return l.error();
  ledger_ = std::move(*l);
  auto gen = store_.meta("gateway_generation");
  if (gen && *gen) generation_ = std::stoull(**gen);
  // Statuses of the last run, so a restart does not repeat every event.
  if (auto st = store_.meta("statuses"); st && *st) {
    auto j = nlohmann::json::parse(**st, nullptr, false);
    if (j.is_array())
      for (const auto& e : j) {
        NamespaceStatus s;
        s.ns = e.value("ns", "");
        const std::string ph = e.value("phase", "");
        s.phase = ph == "Assigned"  ? Phase::kAssigned
                  : ph == "Refused" ? Phase::kRefused
                                    : Phase::kPending;
        s.reason = e.value("reason", "");
        statuses_[s.ns] = s;
      }
  }
  started_ = true;
  return okStatus();
}

Result<ReconcileReport> Controller::reconcile(const World& world,
                                              std::vector<ManifestError> errors) {
  if (!started_) return makeError(EINVAL, "controller not started");
  const Seconds now = clock_();
  Allocation a = allocate(world, ledger_, now, statuses_);
  ReconcileReport rep;
  rep.changed = a.changed.size();
  rep.events = a.events.size();
  if (!a.changed.empty() || !a.events.empty()) {
    // One transaction: records, their audit events and the statuses that
    // produced them land together or not at all.
    nlohmann::json st = nlohmann::json::array();
    for (const auto& [n, s] : a.statuses)
      st.push_back({{"ns", n}, {"phase", toString(s.phase)}, {"reason", s.reason}});
    if (auto r = store_.commit(a.changed, a.events, {{"statuses", st.dump()}}); !r) {
      // Nothing (SQLite) or only part (Kubernetes API) was written, possibly
      // because another controller wrote first: start over from the store.
      if (auto fresh = store_.load()) ledger_ = std::move(*fresh);
      return r.error();
    }
    for (const auto& c : a.changed) a.ledger[c.ip] = c;  // new storage versions
  }
  ledger_ = a.ledger;
  statuses_ = a.statuses;
  // The ledger is durable before any gateway hears of a change.
  if (auto r = writeGatewayStates(world, a, rep); !r) return r.error();

  auto v = std::make_shared<View>();
  v->ledger = ledger_;
  v->statuses = statuses_;
  v->namespaces = world.namespaces;
  v->pools = world.pools;
  v->errors = std::move(errors);
  v->at = now;
  v->reconciles = ++reconciles_;
  std::lock_guard l(mu_);
  view_ = std::move(v);
  return rep;
}

Status Controller::writeGatewayStates(const World& world, const Allocation& a,
                                      ReconcileReport& rep) {
  if (state_dir_.empty()) return okStatus();
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  for (auto& [gw, state] : gatewayStates(world, a)) {
    state.generation = 0;
    const std::string body = serializeDesiredState(state);
    const std::string path = state_dir_ + "/" + gw + ".json";
    if (!written_.count(gw)) {
      // After a restart: what is on disk, without its generation.
      std::ifstream in(path);
      std::stringstream ss;
      ss << in.rdbuf();
      if (auto old = parseDesiredState(ss.str())) {
        old->generation = 0;
        written_[gw] = serializeDesiredState(*old);
      }
    }
    if (written_[gw] == body) continue;
    state.generation = ++generation_;
    if (auto r = store_.commit({}, {}, {{"gateway_generation", std::to_string(generation_)}}); !r)
      return r;
    if (auto r = writeFileAtomically(path, serializeDesiredState(state)); !r) return r;
    written_[gw] = body;
    rep.gateways_written++;
  }
  return okStatus();
}

std::shared_ptr<const View> Controller::view() const {
  std::lock_guard l(mu_);
  return view_;
}

}  // namespace nsegress::controller
