// One node's desired state, from the ledger, the namespaces and the pods —
// the rules written once, used by both modes: the standalone controller
// writes the result to each gateway's file; in a cluster each gateway
// computes its own from its informers' caches. Pure.
//
// Rules:
// - A namespace is listed when it asks for an address (nsegress.io/pool or
//   nsegress.io/ip), including while it is being deleted (its draining pods
//   stay pinned), or when the ledger assigns it an address on any node.
// - Its egress address on node N is the ledger record in state Assigned with
//   that namespace and node N. Only the ledger decides: an annotation alone
//   never maps anything. Should the ledger name two addresses of one family
//   for one namespace on N, the lowest is used (both are that tenant's own)
//   and a warning is raised.
// - A namespace that no longer exists (deleted, its manifest removed) but
//   whose pods are still listed is kept fail-closed while they drain, when
//   the ledger remembers it (a tombstone): its pods never leave unmapped.
// - A listed namespace without an address on N is fail-closed on N; so is
//   one whose address is still onboarding (in the feeds, not yet used).
// - Every listed namespace names the node hosting its address of each family
//   (gateway_v4/v6), so a node steers its own pods of a namespace hosted
//   elsewhere to that node; every state lists the cluster's nodes with their
//   underlay addresses and the pods of listed namespaces on each.
// - Pod addresses are the pods' own (Pod::ips); an address listed by pods of
//   more than one namespace is translated for none and blocked (dropped):
//   dropAmbiguousPodIps.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/objects.h"

namespace nsegress {

struct GatewayView {
  DesiredState state;
  std::vector<std::string> warnings;  // ambiguities
};

// Fed from any container: namespaces and ledger records first, then pods.
class GatewayViews {
 public:
  // `now`: an Assigned record still onboarding (usable_at > now) maps
  // nothing yet; its namespace is held fail-closed.
  explicit GatewayViews(Seconds now = 0) : now_(now) {}
  void addNamespace(const Namespace& ns);
  // `port_blocks`: the record's pool gives each pod a block of ports (its
  // namespace's pods without one are then fail-closed).
  void addRecord(const AddressRecord& r, bool port_blocks = false);
  // A held block (the ledger's); blocks of pods or addresses not listed are
  // left out of every view.
  void addBlock(const PortBlock& b);
  void addNode(const Node& n);
  // After every namespace and record (a pod of an unlisted namespace is
  // skipped at once, so 100k pods cost one map lookup each).
  void addPod(const Pod& p);
  GatewayView forNode(const std::string& node) const;
  // Nodes the ledger places an Assigned address on.
  std::vector<std::string> nodesWithAddresses() const;

 private:
  struct Listed {
    std::vector<IpAddress> pods;
    std::vector<std::pair<std::string, IpAddress>> pod_nodes;  // (node, pod address)
    std::vector<std::pair<std::string, IpAddress>> assigned;   // (node, address) from the ledger
    bool draining = false;  // listed only for its pods (a deleted namespace's tombstone)
    bool blocks_required = false;
    std::vector<PortBlock> blocks;
  };
  std::map<std::string, Listed> listed_;
  std::set<std::string> existing_;    // namespaces that exist
  std::set<std::string> tombstones_;  // namespaces the ledger remembers (any state)
  std::map<std::string, Node> nodes_;
  Seconds now_ = 0;
};

}  // namespace nsegress
