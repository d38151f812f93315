// The controller's HTTP API: a route table (http.h) over a View snapshot and
// the ledger's audit log, so every route (and every malformed request) is
// unit-testable without sockets. Routes that read storage (who-had, audit)
// are marked slow and run off the thread that serves the feeds.
//
//   GET /healthz
//   GET /api/v1/namespaces                 statuses of annotated namespaces
//   GET /api/v1/namespaces/<ns>            one status, with "explain"
//   GET /api/v1/addresses                  the ledger
//   GET /api/v1/who-had?ip=A&at=T          NAT attribution from the audit log
//   GET /api/v1/errors                     manifest errors
//   GET /feeds/edl/<pool>                  External Dynamic List: one address per line
//   GET /feeds/assignments.json | .csv     namespace, ip, pool, since
//   GET /audit?since=ID&limit=N            append-only event log (JSON lines)
//   GET /api/v1/pending                    addresses waiting: firewall cleanup, onboarding
//   POST /api/v1/ack?ip=A                  the firewall side removed A (handshake)
//   GET /api/v1/hold                       what is held and why (null if nothing)
//   POST /api/v1/hold/confirm?token=T      confirm the held releases named by T
//   GET /metrics                           Prometheus text
#pragma once

#include <functional>
#include <set>
#include <string>

#include "nsegress/controller/controller.h"
#include "nsegress/controller/feeds.h"
#include "nsegress/controller/http.h"

namespace nsegress::controller {

struct ApiContext {
  std::function<std::shared_ptr<const View>()> view;  // the current snapshot
  LedgerStore* store = nullptr;                       // audit log
  std::function<std::string()> metrics_text;          // Prometheus exposition
  // Non-empty: this replica does not serve data (cluster mode: not the
  // leader, or its ledger is not loaded yet). Data endpoints and /readyz
  // answer 503 with this reason, so a Service routes readers to the leader
  // and a standby never hands a firewall an empty or stale list.
  std::function<std::string()> not_serving;
  // Confirms held releases (POST /api/v1/hold/confirm?token=T); unset: 501.
  std::function<Status(const std::string& token)> confirm_release;
  // Drains or undrains a gateway node (POST /api/v1/drain?node=N[&undo=1]);
  // returns the drained set after the change. Unset: 501.
  std::function<Result<std::set<std::string>>(const std::string& node, bool drain)> drain;
  // The decommission handshake (POST /api/v1/ack?ip=A): the firewall side
  // acknowledges an address's removal; `by` names who. Unset: 501.
  std::function<Status(const IpAddress& ip, const std::string& by)> acknowledge;
  // Rendered feeds of the current view (feeds.h).
  std::shared_ptr<FeedCache> feed_cache = std::make_shared<FeedCache>();

  // A context over a fixed snapshot (tests).
  static ApiContext fixed(std::shared_ptr<const View> v, LedgerStore* store = nullptr,
                          std::function<std::string()> metrics = {}, std::string not_serving = "");
};

// The API's routes. `ctx` must outlive the router.
// `with_metrics` false: /metrics is served by a listener of its own.
Router apiRouter(const ApiContext& ctx, bool with_metrics = true);
// /healthz and (unless `with_metrics` is false) /metrics only: for a listener
// of its own (--metrics-listen), so a scrape target never exposes the API or
// the feeds.
Router metricsRouter(const ApiContext& ctx, bool with_metrics = true);

// One request through the API's routes (tests).
HttpResponse handleRequest(const ApiContext& ctx, const std::string& method,
                           const std::string& target);

// "why has this namespace no IP?" in words.
std::string explain(const View& v, const std::string& ns);

// Parses a Unix time or an RFC 3339 UTC time ("2026-11-25T12:00:00Z").
std::optional<Seconds> parseTime(const std::string& s);

}  // namespace nsegress::controller
