// What the leader writes back to the API besides the ledger: each
// namespace's nsegress.io/assigned-ip annotation and release finalizer, the
// EgressPool status, and the leader's Endpoints. Every write goes
// through kube::Api (a fake in unit tests, the API server in the kube
// tests) and is conditional where it could overwrite someone else's edit.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nsegress/controller/controller.h"
#include "nsegress/kube/api.h"

namespace nsegress::controller::cluster {

inline constexpr const char* kReleaseFinalizer = "nsegress.io/release";
inline constexpr const char* kLeaderLabel = "nsegress.io/leader";

// A JSON patch (RFC 6902) removing every occurrence of kReleaseFinalizer
// from `finalizers`, each removal guarded by a test of the value at that
// index: it applies only if the list still looks as read, without
// conflicting with unrelated changes to the namespace. "" if absent.
std::string releaseFinalizerPatch(const std::vector<std::string>& finalizers);

struct WriteBackStats {
  size_t annotations = 0;       // namespaces whose assigned-ip was written
  size_t finalizers_added = 0;  // namespaces given the release finalizer
  size_t finalizers_removed = 0;
  size_t failures = 0;  // writes refused for another reason than a stale read
};

// Writes nsegress.io/assigned-ip and the release finalizer of every
// namespace in `namespaces` (as read from the API, with their
// resourceVersion), and removes the finalizer once a namespace being deleted
// no longer holds an address in the ledger. A write refused because the
// namespace changed since it was read (409/422) is left to the next pass
// (the watch brings the new version).
// `already`: namespace -> assigned-ip this leader has written since the
// informer's view was taken (streamed as each address committed): skipped.
WriteBackStats writeBack(kube::Api& api, const View& v,
                         const std::map<std::string, Namespace>& namespaces,
                         const std::map<std::string, std::string>& already = {});

// The merge patch that gives `ns` (as read, with its resourceVersion) the
// assigned-ip `want` ("" removes it) and the release finalizer if it asks
// for an address; conditional on that version. nullopt: nothing to write.
std::optional<std::string> namespacePatch(const Namespace& ns, const std::string& want);

// EgressPool status (kubectl get egresspools: ASSIGNED, QUARANTINED, FREE, a
// Ready condition), written when it changes; `written` remembers what this
// leader wrote (cleared when leadership is lost).
struct WrittenPool {
  PoolUsage usage;
  std::string ready_since;  // the condition's lastTransitionTime
};
void writePoolStatus(kube::Api& api, const View& v, std::map<std::string, WrittenPool>& written);

// The leader's address for readers: the selector-less Service
// `nsegress-controller` routes to the Endpoints object of the same name,
// which lists exactly the replica that leads and serves. (No Pod is ever
// patched: the controller's RBAC allows get/update on that one Endpoints
// object only, never on Pods.)
struct LeaderEndpoint {
  std::string ns;                            // of the Service (the controller's namespace)
  std::string name = "nsegress-controller";  // the Service and its Endpoints
  std::string pod;                           // this replica's Pod name (targetRef)
  std::string ip;                            // this replica's Pod IP
  uint16_t port = 8080;                      // the API/feeds port (plain HTTP; 0: none)
  uint16_t https_port = 0;                   // the API/feeds over TLS (0: none)
  uint16_t lease_port = 0;                   // failover: the lease book's UDP port (0: none)
};
// want=true: the Endpoints list this replica alone. want=false: removes this
// replica if listed (a successor's entry is never touched). Each write is
// conditional on the version read (a 409 re-reads, up to three tries).
// True once the object shows what was asked.
bool publishLeaderEndpoint(kube::Api& api, const LeaderEndpoint& e, bool want);

}  // namespace nsegress::controller::cluster
