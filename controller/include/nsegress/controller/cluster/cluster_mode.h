// nsegress-controller --kubernetes: the same allocator and controller core as
// standalone mode, with typed informers as the source, EgressIP objects as
// the ledger (ledger_store.h), a Lease for leader election, and the
// write-backs of write_back.h — all run by the shared reconcile driver.
#pragma once

#include <string>

#include "nsegress/controller/controller.h"
#include "nsegress/controller/serve.h"
#include "nsegress/controller/webhooks.h"

namespace nsegress::controller::cluster {

struct ClusterModeOptions {
  std::string kubeconfig;  // empty: $KUBECONFIG, ~/.kube/config or in-cluster
  std::string identity;    // lease holder identity (default: host name + pid)
  std::string lease_namespace = "nsegress-system";
  ServeOptions serve;       // the API's listeners, TLS, credentials, limits
  WebhookOptions webhooks;  // change notifications (sent by the leader)
  std::string gateway_state_dir;
  // This replica's Pod in lease_namespace (in-cluster). While it leads and
  // serves, the Endpoints `service_name` list this Pod's IP alone (the
  // selector-less Service of that name routes readers to it).
  std::string pod_name, pod_ip;
  std::string service_name = "nsegress-controller";
  int resync_seconds = 10;
  // Client-side rate limit of the API clients (watches; writes), each.
  // A burst of 1,000 namespaces is ~4,000 requests: at 200/s the limiter
  // alone took 18 s; at 500/s the API server is the bound (bench/kube_burst).
  // Steady state is a few requests a minute; the API server's own fairness
  // (and --kube-qps on a small shared control plane) protects it.
  double qps = 500, burst = 1000;
  int lease_duration_ms = 15000;  // leader election timings (client-go defaults)
  int renew_deadline_ms = 10000;
  int retry_period_ms = 2000;
  ReleaseGuard guard;
  // Failover (docs/architecture.md "Failover in cluster mode"): while it
  // leads, this replica runs the lease book on `lease_listen` (UDP,
  // "IPv4:port") and lists its port as "lease" in the
  // Endpoints; changes of owner are written to per-address Leases. Empty: off.
  std::string lease_listen;
  std::string peer_key;  // the key itself (read from --peer-key)
  int lease_ms = 500, promise_ms = 500;
};

// Runs until SIGINT/SIGTERM. Returns the process exit status.
int runClusterMode(const ClusterModeOptions& o);

}  // namespace nsegress::controller::cluster
