// Failover roles (docs/architecture.md "Failover"): for each assigned
// address, its owner, its designated standby and its ownership epoch. Pure,
// shared by the controller (the store's designations, each gateway's desired
// state in standalone mode) and by each gateway in cluster mode (which
// computes its own view from the API, by the same rules).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/objects.h"

namespace nsegress {

// Rendezvous hashing: sticky (a node's arrival or departure moves only the
// addresses whose standby it becomes or was) and spread evenly.
std::string chooseStandby(const IpAddress& ip, const std::string& owner,
                          const std::vector<std::string>& candidates);
// Each assigned address's owner (the store's record where it has one, else
// the ledger's node: owner and epoch always one pair), designated standby (another
// ready, undrained node its pool may use) and epoch (the lease book's; 1 if
// it never moved).
std::map<IpAddress, AddressRole> failoverRoles(const World& world,
                                               const std::map<IpAddress, AddressRecord>& ledger);
// Planned moves: each address whose lease owner is drained goes to its
// standby (a drained node is never a standby, never a new owner).
std::map<IpAddress, std::string> plannedHandovers(const World& world,
                                                  const std::map<IpAddress, AddressRecord>& ledger);
// A node's desired state carries the roles of the addresses of the
// namespaces it lists (the addresses it hosts, stands by for or steers to).
void attachRoles(DesiredState& state, const std::map<IpAddress, AddressRole>& roles);

}  // namespace nsegress
