// Kubernetes objects -> typed values (objects.h). One decoder for both
// modes: JSON from the API server, and standalone YAML manifests converted to
// the same tree (controller/manifests.cc). Errors name the field, e.g.
// `metadata.labels.team: must be a string`.
//
// Structural errors (no name, a field of the wrong type) refuse the object.
// An EgressPool whose *spec* is unusable is not an error: it is returned
// with Pool::invalid set, so the namespaces asking for it can see why.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "nsegress/common/objects.h"

namespace nsegress {

// A kind nsegress does not read (left to others, as kubectl apply would).
struct OtherKind {
  std::string kind;
};
using Object = std::variant<OtherKind, Pool, Namespace, Pod, Node>;

// Any object with apiVersion, kind and metadata.name.
Result<Object> decodeObject(const nlohmann::json& o);

// One kind (the informers know what they watch). The kind and apiVersion
// fields are not required (watch events of a list carry them inconsistently).
Result<Namespace> decodeNamespace(const nlohmann::json& o);
Result<Pod> decodePod(const nlohmann::json& o);
Result<Node> decodeNode(const nlohmann::json& o);
Result<Pool> decodePool(const nlohmann::json& o);
// An EgressIP object: the ledger record it carries (status), with its
// resourceVersion as the record's storage version.
Result<AddressRecord> decodeEgressIP(const nlohmann::json& o);

// A per-address ownership Lease (objects.h EgressLease). Its name must be
// egressLeaseName of its address, its epoch ≥ 1, its holder a node name.
Result<EgressLease> decodeEgressLease(const nlohmann::json& o);
// The controller leader's lease server from the Endpoints it publishes: the
// IPv4 address of its one listed address and the port named "lease"
// ("IPv4:port"); "" when the Endpoints list no such leader.
Result<std::string> decodeLeaseServer(const nlohmann::json& o);

// "Kind name" of an object, for messages ("" parts when absent).
std::string describeObject(const nlohmann::json& o);

}  // namespace nsegress
