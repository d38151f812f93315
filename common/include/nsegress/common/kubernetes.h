// Names and rules both processes apply to Kubernetes objects, so the
// controller (manifests or API) and the gateway (API) cannot disagree.
#pragma once

#include <string_view>

namespace nsegress {

inline constexpr const char* kPoolAnnotation = "nsegress.io/pool";
inline constexpr const char* kIpAnnotation = "nsegress.io/ip";
inline constexpr const char* kAssignedAnnotation = "nsegress.io/assigned-ip";

// Whether a pod's status.podIPs are its own. A host-network pod reports the
// node's address (putting it in a map would capture the node's traffic), and
// a finished pod (Succeeded/Failed) keeps reporting an address the network
// plugin may already have given to a new pod of another namespace.
inline bool podOwnsItsAddresses(std::string_view phase, bool host_network) {
  return !host_network && phase != "Succeeded" && phase != "Failed";
}

}  // namespace nsegress
