// Port: the ownership fence (docs/architecture.md "Failover"). The kernel
// itself stops this node answering ARP/ND for an egress address and sending
// or receiving packets with it the moment the node's proof of ownership
// ends, whether or not the agent is alive: every address this node may own
// is fenced unless it is live, and a live address carries a timeout. Real:
// netlink::Fence (nftables tables `inet nsegress-fence` and
// `arp nsegress-fence`). Fake: tests/mocks/fake_fence.h.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <set>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

class FenceKernel {
 public:
  virtual ~FenceKernel() = default;
  // Replaces the fence in one transaction: `hostable` are fenced unless in
  // `live`; a live address stays live for its timeout (nullopt: no expiry).
  virtual Status apply(
      const std::set<IpAddress>& hostable,
      const std::map<IpAddress, std::optional<std::chrono::milliseconds>>& live) = 0;
};

}  // namespace nsegress::gateway
