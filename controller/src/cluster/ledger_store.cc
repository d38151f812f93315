#include "nsegress/controller/cluster/ledger_store.h"

#include "nsegress/common/json.h"
#include "nsegress/common/parallel.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "nsegress/common/decode.h"

namespace nsegress::controller::cluster {

using kube::Response;
using nlohmann::json;

namespace {
constexpr const char* kBase = "/apis/nsegress.io/v1alpha1/egressips";

Seconds parse3339(const std::string& s) {
  return parseRfc3339(s).value_or(0);
}

json historyEntry(const AuditEvent& e) {
  json h{{"at", formatTime(e.at)}, {"kind", e.kind}};
  if (!e.ns.empty()) h["namespace"] = e.ns;
  if (!e.node.empty()) h["node"] = e.node;
  if (!e.message.empty()) h["message"] = e.message.substr(0, 512);
  return h;
}

json statusOf(const AddressRecord& r, const json& history) {
  // Empty optional fields are omitted (absent reads back as empty): the test
  // API server (1.20 built with Go 1.19) decodes "" in a CRD status as null.
  json s{{"state", toString(r.state)}};
  if (!r.ns.empty()) s["namespace"] = r.ns;
  if (!r.node.empty()) s["node"] = r.node;
  if (r.assigned_at) s["assignedAt"] = formatTime(r.assigned_at);
  if (r.released_at) s["releasedAt"] = formatTime(r.released_at);
  if (r.quarantine_until) s["quarantineUntil"] = formatTime(r.quarantine_until);
  if (r.usable_at) s["usableAt"] = formatTime(r.usable_at);
  if (!history.empty()) s["history"] = history;
  return s;
}

Error apiError(const std::string& what, const Response& r) {
  auto j = parseJsonOrDiscarded(r.body);
  std::string msg = j.is_object() ? j.value("message", r.body) : r.body;
  return makeError(r.status == 409 ? EAGAIN : EIO,
                   what + ": HTTP " + std::to_string(r.status) + ": " + msg);
}
}  // namespace

std::string egressIpObjectName(const IpAddress& ip) {
  std::string n = ip.str();
  for (auto& c : n)
    if (c == ':') c = '-';
  if (!n.empty() && n.front() == '-') n = "0" + n;
  if (!n.empty() && n.back() == '-') n += "0";
  return n;
}

KubeLedgerStore::KubeLedgerStore(kube::Api& api, Clock& clock, std::string state_namespace)
    : api_(api), clock_(clock), state_ns_(std::move(state_namespace)) {}

Result<Ledger> KubeLedgerStore::load() {
  auto r = api_.request("GET", kBase);
  if (!r) return r.error();
  if (r->status != 200) return apiError("list egressips", *r);
  auto j = parseJsonOrDiscarded(r->body);
  if (!j.is_object() || !j["items"].is_array())
    return makeError(EPROTO, "list egressips: malformed response");
  Ledger out;
  std::lock_guard l(mu_);
  history_.clear();
  merged_.reset();
  skipped_ = 0;
  for (const auto& item : j["items"]) {
    // The same decoder as the gateways' informers; an object that does not
    // decode is skipped and counted (a claim of its address then conflicts
    // with the object and fails loudly, instead of reading garbage as Free).
    auto rec = decodeEgressIP(item);
    if (!rec) {
      ++skipped_;
      spdlog::warn("EgressIP {}: skipped: {}", describeObject(item), rec.error().message);
      continue;
    }
    const auto& st = item.value("status", json::object());
    if (st.contains("history") && st["history"].is_array()) history_[rec->ip] = st["history"];
    out[rec->ip] = std::move(*rec);
  }
  return out;
}

Status KubeLedgerStore::putStatus(AddressRecord& r, const std::string& rv) {
  // This address's history: what it had, plus this commit's events for it,
  // written in the same conditional update as the record itself.
  json history;
  {
    std::lock_guard l(data_mu_);
    history = history_.count(r.ip) ? history_[r.ip] : json::array();
  }
  if (auto it = pending_history_.find(r.ip.str()); it != pending_history_.end())
    for (const auto& h : it->second) history.push_back(h);
  if (history.size() > kHistoryMax)
    history.erase(history.begin(), history.begin() + (history.size() - kHistoryMax));
  json obj{{"apiVersion", "nsegress.io/v1alpha1"},
           {"kind", "EgressIP"},
           {"metadata", {{"name", egressIpObjectName(r.ip)}, {"resourceVersion", rv}}},
           {"spec", {{"ip", r.ip.str()}, {"pool", r.pool}}},
           {"status", statusOf(r, history)}};
  auto resp = api_.request("PUT", std::string(kBase) + "/" + egressIpObjectName(r.ip) + "/status",
                           dumpJson(obj));
  if (!resp) return resp.error();
  if (resp->status == 409) ++conflicts_;
  if (resp->status != 200) return apiError("update " + r.ip.str(), *resp);
  auto j = parseJsonOrDiscarded(resp->body);
  const std::string new_rv = j.is_object() ? j["metadata"].value("resourceVersion", "") : "";
  r.version = new_rv;
  {
    std::lock_guard l(data_mu_);
    history_[r.ip] = std::move(history);
    merged_.reset();
    if (record_writes_) writes_.push_back({new_rv.empty() ? 0 : std::stoll(new_rv), r});
  }
  if (on_assigned_ && r.state == AddressState::kAssigned) on_assigned_(r);
  return okStatus();
}

Status KubeLedgerStore::writeRecord(AddressRecord& r) {
  // Conditional on the version the allocator's decision was based on.
  if (!r.version.empty()) return putStatus(r, r.version);
  // Claim the address: create-if-absent.
  json obj{{"apiVersion", "nsegress.io/v1alpha1"},
           {"kind", "EgressIP"},
           {"metadata", {{"name", egressIpObjectName(r.ip)}}},
           {"spec", {{"ip", r.ip.str()}, {"pool", r.pool}}}};
  auto resp = api_.request("POST", kBase, dumpJson(obj));
  if (!resp) return resp.error();
  if (resp->status == 409) {
    ++conflicts_;
    return apiError("claim " + r.ip.str() + " (another controller created it first)", *resp);
  }
  if (resp->status != 201) return apiError("create " + r.ip.str(), *resp);
  auto j = parseJsonOrDiscarded(resp->body);
  return putStatus(r, j.is_object() ? j["metadata"].value("resourceVersion", "") : "");
}

Status KubeLedgerStore::commit(std::vector<AddressRecord>& changed,
                               const std::vector<AuditEvent>& events,
                               const std::map<std::string, std::string>& meta) {
  std::lock_guard l(mu_);
  // Events about an address that this commit writes go into that address's
  // history (durable, same write); the rest are kept in memory (and as
  // Kubernetes Events).
  std::set<std::string> written;
  for (const auto& r : changed) written.insert(r.ip.str());
  pending_history_.clear();
  for (const auto& e : events)
    if (written.count(e.ip)) pending_history_[e.ip].push_back(historyEntry(e));
  // Releases first, as in the SQLite store, then assignments. Within a pass
  // the records are independent objects, each written conditionally: up to
  // kParallelWrites at a time (a burst of namespaces is not a queue of round
  // trips). A failure stops the pass; what was written is individually safe
  // and the allocator converges on the next reconcile.
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<AddressRecord*> todo;
    for (auto& r : changed)
      if ((r.state == AddressState::kAssigned) == (pass == 1)) todo.push_back(&r);
    auto first_error =
        runParallel(todo.size(), kParallelWrites, [&](size_t i) { return writeRecord(*todo[i]); });
    if (first_error) return *first_error;
  }
  for (const auto& e : events) {
    if (!written.count(e.ip)) {
      events_.push_back({static_cast<int64_t>(events_.size()) + 1, e});
      merged_.reset();
    }
    emitEvent(e);
  }
  if (!meta.empty()) {
    const std::string path =
        "/api/v1/namespaces/" + state_ns_ + "/configmaps/nsegress-controller-state";
    json patch{{"data", meta}};
    auto r = api_.request("PATCH", path, dumpJson(patch), "application/merge-patch+json");
    if (r && r->status == 404) {
      json cm{{"apiVersion", "v1"},
              {"kind", "ConfigMap"},
              {"metadata", {{"name", "nsegress-controller-state"}, {"namespace", state_ns_}}},
              {"data", meta}};
      r = api_.request("POST", "/api/v1/namespaces/" + state_ns_ + "/configmaps", dumpJson(cm));
    }
    if (!r) return r.error();
    if (r->status != 200 && r->status != 201) return apiError("write controller state", *r);
  }
  return okStatus();
}

void KubeLedgerStore::emitEvent(const AuditEvent& e) {
  if (e.ns.empty()) return;
  const std::string now = formatTime(clock_.unixNow());
  const bool warning = e.kind == "Refused" || e.kind == "Pending" || e.kind == "Conflict";
  json ev{{"apiVersion", "events.k8s.io/v1"},
          {"kind", "Event"},
          {"metadata", {{"generateName", "nsegress-"}, {"namespace", e.ns}}},
          {"eventTime", now.substr(0, now.size() - 1) + ".000000Z"},
          {"reportingController", "nsegress.io/controller"},
          {"reportingInstance", instance_.substr(0, 128)},
          {"action", e.kind},
          {"reason", e.kind},
          {"type", warning ? "Warning" : "Normal"},
          {"note", e.message.substr(0, 1024)},
          // A Namespace is referenced with itself as namespace, so the event
          // lives in, and is listed by, that namespace.
          {"regarding",
           {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"name", e.ns}, {"namespace", e.ns}}}};
  if (uid_of_)
    if (std::string uid = uid_of_(e.ns); !uid.empty()) ev["regarding"]["uid"] = uid;
  // Best effort: an event that cannot be written does not undo the ledger.
  const std::string path = "/apis/events.k8s.io/v1/namespaces/" + e.ns + "/events";
  if (send_event_) {
    send_event_(path, dumpJson(ev));
    return;
  }
  eventWritten(e.ns, api_.request("POST", path, dumpJson(ev)));
}

void KubeLedgerStore::eventWritten(const std::string& ns, const Result<kube::Response>& r) {
  if (r && r->status == 404) {
    // The namespace is gone (its release is what is being recorded): there
    // is nowhere to put the event; the ledger has the record.
    spdlog::debug("event for deleted namespace {} not written", ns);
  } else if (!r || r->status != 201) {
    ++event_failures_;
    spdlog::warn("event for namespace {} not written: {}", ns,
                 r ? r->body.substr(0, 300) : r.error().message);
  }
}

Result<std::vector<StoredEvent>> KubeLedgerStore::audit(int64_t since, size_t limit) {
  // Durable: every address's history from its EgressIP status (as of the
  // last load or write), merged in time order with this process's events
  // that changed no address (refusals, pending reasons; those are also
  // Kubernetes Events). Ids are positions in that order.
  std::lock_guard l(mu_);
  if (!merged_) merged_ = mergedHistory();
  const auto& all = *merged_;
  std::vector<StoredEvent> out;
  for (size_t i = static_cast<size_t>(std::max<int64_t>(since, 0));
       i < all.size() && out.size() < limit; ++i)
    out.push_back({static_cast<int64_t>(i) + 1, all[i]});
  return out;
}

// Built once per change of the histories or events, not per audit page
// (who-had pages through all of it).
std::vector<AuditEvent> KubeLedgerStore::mergedHistory() const {
  std::vector<AuditEvent> all;
  for (const auto& [ip, hist] : history_)
    for (const auto& h : hist) {
      if (!h.is_object()) continue;
      AuditEvent e;
      e.at = parse3339(h.value("at", ""));
      e.kind = h.value("kind", "");
      e.ns = h.value("namespace", "");
      e.ip = ip.str();
      e.node = h.value("node", "");
      e.message = h.value("message", "");
      all.push_back(std::move(e));
    }
  for (const auto& e : events_) all.push_back(e.event);
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& a, const auto& b) { return a.at < b.at; });
  return all;
}

Result<std::optional<std::string>> KubeLedgerStore::meta(const std::string& key) {
  auto r = api_.request(
      "GET", "/api/v1/namespaces/" + state_ns_ + "/configmaps/nsegress-controller-state");
  if (!r) return r.error();
  if (r->status == 404) return std::optional<std::string>();
  if (r->status != 200) return apiError("read controller state", *r);
  auto j = parseJsonOrDiscarded(r->body);
  if (!j.is_object() || !j.contains("data") || !j["data"].contains(key))
    return std::optional<std::string>();
  return std::optional<std::string>(j["data"][key].get<std::string>());
}

std::vector<std::pair<int64_t, AddressRecord>> KubeLedgerStore::writesForTest() const {
  std::lock_guard l(mu_);
  return writes_;
}

}  // namespace nsegress::controller::cluster
