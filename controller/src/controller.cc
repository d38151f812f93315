#include "nsegress/controller/controller.h"
#include "nsegress/common/json.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nsegress/common/file.h"

namespace nsegress::controller {

Controller::Controller(LedgerStore& store, Clock clock, std::string gateway_state_dir,
                       ReleaseGuard guard)
    : store_(store),
      clock_(std::move(clock)),
      state_dir_(std::move(gateway_state_dir)),
      guard_(guard),
      view_(std::make_shared<View>()) {}

Status Controller::start() {
  auto l = store_.load();
  if (!l) return l.error();
  ledger_ = std::move(*l);
  auto b = store_.loadBlocks();
  if (!b) return b.error();
  blocks_ = std::move(*b);
  auto gen = store_.meta("gateway_generation");
  if (gen && *gen) generation_ = std::stoull(**gen);
  // Statuses of the last run, so a restart does not repeat every event.
  if (auto st = store_.meta("statuses"); st && *st) {
    auto j = parseJsonOrDiscarded(**st);
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
  if (auto w = store_.checkWritable(); !w) not_ready_ = w.error().message;
  // The ledger as loaded is what the feeds serve until the first reconcile
  // (a restart never hands a firewall an empty list; /readyz waits for it).
  auto v = std::make_shared<View>();
  v->ledger = ledger_;
  v->statuses = statuses_;
  v->blocks = blocks_.held;
  v->at = clock_();
  v->not_ready = not_ready_;
  std::lock_guard lk(mu_);
  view_ = std::move(v);
  return okStatus();
}

void Controller::setNotReady(std::string why) {
  not_ready_ = std::move(why);
  std::lock_guard l(mu_);
  auto v = std::make_shared<View>(*view_);
  v->not_ready = not_ready_;
  view_ = std::move(v);
}

namespace {
// A token naming exactly a set of releases (FNV-1a of the sorted names).
std::string releaseToken(const std::vector<std::string>& namespaces) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& n : namespaces) {
    for (unsigned char c : n) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  }
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}
}  // namespace

Status Controller::confirmRelease(const std::string& token) {
  std::lock_guard l(mu_);
  if (!hold_ || hold_->token.empty())
    return makeError(ENOENT, "no release is waiting for confirmation");
  if (hold_->token != token)
    return makeError(EINVAL, "token " + token.substr(0, 32) +
                                 " does not name the held releases (see GET /api/v1/hold)");
  confirmed_ = token;
  return okStatus();
}

Status Controller::acknowledgeRemoval(const IpAddress& ip, const std::string& by) {
  std::lock_guard l(mu_);
  auto it = view_->ledger.find(ip);
  if (it == view_->ledger.end()) return makeError(ENOENT, ip.str() + " is not in the ledger");
  if (it->second.state != AddressState::kPendingFirewallCleanup)
    return makeError(EINVAL, ip.str() + " is " + toString(it->second.state) +
                                 ", not waiting for firewall cleanup");
  acknowledged_[ip] = by;
  return okStatus();
}

ReconcileReport Controller::hold(Hold h, const World& world, std::vector<ManifestError> errors) {
  ReconcileReport rep;
  rep.held = true;
  {
    std::lock_guard l(mu_);
    // Keep the time the hold began while it is the same hold.
    if (hold_ && hold_->reason == h.reason && hold_->token == h.token) h.since = hold_->since;
    hold_ = h;
  }
  publish(world, std::move(errors), std::move(h), clock_());
  return rep;
}

void Controller::publish(const World& world, std::vector<ManifestError> errors,
                         std::optional<Hold> hold, Seconds now) {
  auto v = std::make_shared<View>();
  v->ledger = ledger_;
  v->statuses = statuses_;
  v->namespaces = world.namespaces;
  v->pools = world.pools;
  v->errors = std::move(errors);
  v->hold = std::move(hold);
  v->not_ready = not_ready_;
  v->at = now;
  v->blocks = blocks_.held;
  v->block_usage = blockUsage(world, ledger_, blocks_, last_blocks_);
  v->starved = last_blocks_.starved;
  std::lock_guard l(mu_);
  v->reconciles = view_->reconciles + (v->hold ? 0 : 1);
  view_ = std::move(v);
}

Result<ReconcileReport> Controller::reconcile(const World& given, std::vector<ManifestError> errors,
                                              const SourceState& source) {
  if (!started_) return makeError(EINVAL, "controller not started");
  // A ledger that cannot keep port blocks (cluster mode's, today) makes a
  // pool asking for them invalid: attribution is never silently dropped.
  World patched;
  const World* wp = &given;
  if (!store_.keepsPortBlocks() &&
      std::any_of(given.pools.begin(), given.pools.end(),
                  [](const auto& p) { return p.second.port_block_size && !p.second.invalid; })) {
    patched = given;
    for (auto& [name, p] : patched.pools)
      if (p.port_block_size && !p.invalid)
        p.invalid =
            "spec.portBlockSize: attribution by port needs a ledger that keeps port "
            "blocks (the standalone controller's); not supported in cluster mode yet";
    wp = &patched;
  }
  const World& world = *wp;
  const Seconds now = clock_();
  if (!source.complete) {
    auto rep = hold(Hold{"the source is not a complete read: " + source.why, {}, "", now}, world,
                    std::move(errors));
    rep.recheck_after = source.recheck_after;
    return rep;
  }
  // The release guard: which assigned namespaces this world says are gone.
  std::vector<std::string> gone;
  size_t assigned = 0;
  for (const auto& [ip, r] : ledger_) {
    if (r.state != AddressState::kAssigned) continue;
    ++assigned;
    auto it = world.namespaces.find(r.ns);
    if (it == world.namespaces.end() || !it->second.requestsEgress()) gone.push_back(r.ns);
  }
  std::sort(gone.begin(), gone.end());
  const bool drastic = gone.size() >= std::max<size_t>(1, guard_.min_releases) &&
                       static_cast<double>(gone.size()) >= guard_.min_fraction * assigned;
  const bool everything =
      !gone.empty() && world.namespaces.empty() && guard_.min_releases != SIZE_MAX;
  if (drastic || everything) {
    const std::string token = releaseToken(gone);
    bool confirmed;
    {
      std::lock_guard l(mu_);
      confirmed = confirmed_ == token;
    }
    if (!confirmed)
      return hold(Hold{std::to_string(gone.size()) + " of " + std::to_string(assigned) +
                           " assigned addresses would be released at once" +
                           (everything ? " (the source lists no namespace at all)" : "") +
                           "; confirm with nsegressctl confirm-release " + token,
                       gone, token, now},
                  world, std::move(errors));
  }
  std::map<IpAddress, std::string> acks;
  {
    std::lock_guard l(mu_);
    acks = acknowledged_;
  }
  Allocation a = allocate(world, ledger_, now, statuses_, acks);
  ReconcileReport rep;
  rep.changed = a.changed.size();
  rep.events = a.events.size();
  if (!a.changed.empty() || !a.events.empty()) {
    // One transaction: records, their audit events and the statuses that
    // produced them land together or not at all.
    nlohmann::json st = nlohmann::json::array();
    for (const auto& [n, s] : a.statuses)
      st.push_back({{"ns", n}, {"phase", toString(s.phase)}, {"reason", s.reason}});
    if (auto r = store_.commit(a.changed, a.events, {{"statuses", dumpJson(st)}}); !r) {
      // Nothing (SQLite) or only part (Kubernetes API) was written, possibly
      // because another controller wrote first: start over from the store.
      if (auto fresh = store_.load()) ledger_ = std::move(*fresh);
      setNotReady("the last change could not be recorded: " + r.error().message);
      return r.error();
    }
    for (const auto& c : a.changed) a.ledger[c.ip] = c;  // new storage versions
    if (on_commit_ && !a.events.empty()) on_commit_(a.events);
  }
  ledger_ = a.ledger;
  statuses_ = a.statuses;
  // Port blocks follow the ledger as committed, and are durable before any
  // gateway hears of them (a crash before this commit leaves no gateway
  // using a block the ledger does not hold).
  BlockPlan bp = planPortBlocks(world, ledger_, blocks_, now);
  if (!bp.empty()) {
    if (auto r = store_.commitBlocks(bp); !r) {
      if (auto fresh = store_.loadBlocks()) blocks_ = std::move(*fresh);
      setNotReady("port blocks could not be recorded: " + r.error().message);
      return r.error();
    }
    applyBlockPlan(blocks_, bp);
  }
  last_blocks_ = std::move(bp);
  {
    std::lock_guard l(mu_);
    hold_.reset();
    confirmed_.clear();
    // Recorded (or no longer pending): done. One that arrived during this
    // pass stays for the next.
    for (const auto& [ip, by] : acks)
      if (auto it = acknowledged_.find(ip); it != acknowledged_.end() && it->second == by)
        acknowledged_.erase(it);
  }
  // The ledger is durable before any gateway hears of a change.
  rep.next_change_at = nextOnboardingEnd(ledger_, now);
  if (auto r = writeGatewayStates(world, a, now, rep); !r) {
    setNotReady("gateway states could not be written: " + r.error().message);
    return r.error();
  }
  if (!not_ready_.empty() && (a.changed.empty() && a.events.empty()))
    if (auto w = store_.checkWritable(); w) not_ready_.clear();
  if (!a.changed.empty() || !a.events.empty()) not_ready_.clear();
  publish(world, std::move(errors), std::nullopt, now);
  return rep;
}

Status Controller::writeGatewayStates(const World& world, const Allocation& a, Seconds now,
                                      ReconcileReport& rep) {
  if (state_dir_.empty()) return okStatus();
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  for (auto& [gw, state] : gatewayStates(world, a, now, &blocks_)) {
    // Defence in depth: only a valid node name becomes a file name.
    if (!isDnsSubdomain(gw)) continue;
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
