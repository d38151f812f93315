// The routing state of steering (gateway/ports/routes.h) in the kernel: the
// VXLAN device and the policy rules through libnl, next-hop objects, routes
// and neighbour/forwarding entries through libmnl (libnl 3.7 has no
// next-hop objects and no RTA_NH_ID).
//
// Numbers (documented in docs/life-of-a-packet.md):
//   slot s: mark s << 16 / 0x00ff0000, rule priority kRulePriority,
//           table kTableBase + s, next hops kNexthopBase4 + s (IPv4) and
//           kNexthopBase6 + s (IPv6), blackhole defaults at metric kBlackholeMetric.
#pragma once

#include <memory>
#include <string>

#include "nsegress/gateway/ports/routes.h"

namespace nsegress::netlink {

inline constexpr uint32_t kRulePriority = 4200;
inline constexpr uint32_t kTableBase = 4200;
inline constexpr uint32_t kNexthopBase4 = 4200000;
inline constexpr uint32_t kNexthopBase6 = 4300000;
inline constexpr uint32_t kBlackholeMetric = 4200000;

class SteerRoutes final : public gateway::RouteKernel {
 public:
  // Sockets in the calling thread's network namespace. `tunnel`: the name
  // of the tunnel device this agent owns ("" on an L2 underlay).
  static Result<std::unique_ptr<SteerRoutes>> open(std::string tunnel);
  ~SteerRoutes() override;

  Result<gateway::ObservedRoutes> observe() override;
  Status ensureTunnel(const gateway::TunnelSpec& t) override;
  Status deleteTunnel(const std::string& name) override;
  Status addSlot(int slot) override;
  Status setHop(int slot, const gateway::Hop& hop) override;
  Status clearHop(int slot, const gateway::Hop& hop) override;

  // Removes every slot (rules, tables, next hops) and the tunnel
  // (operator `--cleanup`, tests). Absent is success.
  Status destroyAll();

  struct Impl;

 private:
  SteerRoutes(std::string tunnel, std::unique_ptr<Impl> impl);
  bool hasAddress(int ifindex, const IpAddress& a);
  std::string tunnel_;
  std::unique_ptr<Impl> impl_;
};

// The MTU of a device (0 if it does not exist).
int deviceMtu(const std::string& name);

}  // namespace nsegress::netlink
