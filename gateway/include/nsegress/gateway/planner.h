// The planner: desired state + observed kernel state -> Plan. Pure.
#pragma once

#include <set>

#include "nsegress/common/desired_state.h"
#include "nsegress/gateway/dataplane.h"

namespace nsegress::gateway {

struct Observed {
  ObservedNft nft;
  std::set<IpAddress> uplink_addresses;
};

// Computes the smallest plan that moves `observed` to `desired`. Only elements
// whose value differs are touched, so a change to one namespace produces ops
// for that namespace only.
Plan plan(const DesiredState& desired, const Observed& observed);

}  // namespace nsegress::gateway
