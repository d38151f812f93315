// The gateway's desired state in cluster mode, derived from the API: the
// ledger (EgressIP objects) says which address is assigned to which
// namespace on which node; Namespaces say which namespaces asked for one;
// Pods give the addresses to translate. Pure: inputs are informer caches.
//
// Rules (docs/kubernetes.md, "The gateway in a cluster"):
// - A namespace is listed when it carries nsegress.io/pool or nsegress.io/ip,
//   including while it is being deleted (its draining pods stay pinned), or
//   when the ledger assigns it an address on any node.
// - Its egress address is the EgressIP in state Assigned with status.node ==
//   this node and status.namespace == it. Only the ledger decides: an
//   annotation alone never maps anything. Should the ledger name two
//   addresses of one family for one namespace, the lowest is used (both are
//   that tenant's own) and a warning is raised.
// - Listed namespaces without an address here are fail-closed on this node.
// - Pod addresses follow podOwnsItsAddresses() and dropAmbiguousPodIps().
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nsegress/common/desired_state.h"

namespace nsegress::kube {

struct GatewayView {
  DesiredState state;
  std::vector<std::string> warnings;  // malformed objects skipped, ambiguities
};

// Keys and values as Informer::snapshot() returns them (trimmed objects).
GatewayView gatewayView(const std::string& node,
                        const std::map<std::string, nlohmann::json>& namespaces,
                        const std::map<std::string, nlohmann::json>& pods,
                        const std::map<std::string, nlohmann::json>& egressips);

}  // namespace nsegress::kube
