// The ownership fence in the kernel (ports/fence.h): two small nftables
// tables of their own, apart from the SNAT table, so a rebuild of one never
// opens the other.
//
//   table inet nsegress-fence
//     set hostable4 { ipv4_addr }  set live4 { ipv4_addr; flags timeout }  (and 6)
//     chain egress  { type filter hook postrouting priority 300
//       ip saddr @hostable4 ip saddr != @live4 counter drop        (after SNAT)
//       ip6 saddr ... ; icmpv6 neighbour advertisement for a fenced target: drop }
//     chain ingress { type filter hook prerouting priority -300
//       ip daddr @hostable4 ip daddr != @live4 counter drop }      (and ip6)
//   table arp nsegress-fence
//     chain out { type filter hook output: arp sender ip fenced → drop }
//     chain in  { type filter hook input:  arp target ip fenced → drop }
//   table netdev nsegress-fence (with an uplink)
//     chain egress { type filter hook egress device <uplink>
//       ip/ip6 saddr fenced → drop; arp sender ip fenced → drop }
//     (the last point before the wire: catches a packet that passed the
//     postrouting fence while live and was held, e.g. in the neighbour
//     queue of a cut uplink, until after the address was fenced)
#pragma once

#include <memory>
#include <string>

#include "nsegress/gateway/ports/fence.h"

namespace nsegress::netlink {

class Fence final : public gateway::FenceKernel {
 public:
  // Opens a netfilter socket in the calling thread's network namespace and
  // creates both tables unless they exist (an existing fence is adopted: its
  // live addresses keep their timeouts across an agent restart).
  // `uplink` ("" none): the device whose egress hook carries the last fence.
  static Result<std::unique_ptr<Fence>> open(std::string uplink = "",
                                             std::string table = "nsegress-fence");
  ~Fence() override;
  Status apply(const std::set<IpAddress>& hostable,
               const std::map<IpAddress, std::optional<std::chrono::milliseconds>>& live) override;
  // Removes the tables (--cleanup, tests); absent is success.
  Status destroy();

  struct Impl;

 private:
  explicit Fence(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nsegress::netlink
