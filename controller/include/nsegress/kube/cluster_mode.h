// nsegress-controller --kubernetes: the same allocator and controller core as
// standalone mode, with informers as the source, EgressIP objects as the
// ledger, a Lease for leader election, and write-back of
// nsegress.io/assigned-ip plus a release finalizer on namespaces.
#pragma once

#include <string>
#include <vector>

namespace nsegress::kube {

struct ClusterModeOptions {
  std::string kubeconfig;  // empty: $KUBECONFIG, ~/.kube/config or in-cluster
  std::string identity;    // lease holder identity (default: host name + pid)
  std::string lease_namespace = "nsegress-system";
  std::string listen;  // HTTP API, feeds, metrics ("" = off)
  std::string gateway_state_dir;
  // This replica's Pod in lease_namespace (in-cluster). While it leads and
  // serves, the Pod carries kLeaderLabel=true; the Service selects on it.
  std::string pod_name;
  int resync_seconds = 10;
  int lease_duration_ms = 15000;  // leader election timings (client-go defaults)
  int renew_deadline_ms = 10000;
  int retry_period_ms = 2000;
};

inline constexpr const char* kReleaseFinalizer = "nsegress.io/release";
inline constexpr const char* kLeaderLabel = "nsegress.io/leader";

// A JSON patch (RFC 6902) removing every occurrence of kReleaseFinalizer
// from `finalizers`, each removal guarded by a test of the value at that
// index: it applies only if the list still looks as read, without
// conflicting with unrelated changes to the namespace. "" if absent.
std::string releaseFinalizerPatch(const std::vector<std::string>& finalizers);

// Runs until SIGINT/SIGTERM. Returns the process exit status.
int runClusterMode(const ClusterModeOptions& o);

}  // namespace nsegress::kube
