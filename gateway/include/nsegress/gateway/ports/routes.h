// Port: the routing state steering owns — the tunnel device, one kernel
// next hop per gateway, the policy rules and tables that send marked packets
// to it. Real: netlink::SteerRoutes. Fake: tests/mocks/fake_routes.h.
//
// Slots: each node this node sends to through steering gets a slot
// (1..kMaxSlots): the gateways it steers its pods to and, on a gateway, the
// nodes whose steered flows it answers (replies go back the way they came).
// Slot s owns the packet mark s << 16 (under the mask 0x0fff0000), one IPv4 and one
// IPv6 rule `fwmark → table`, the table's routes (`default` via the slot's
// next hop, and a blackhole default behind it), and the next-hop objects
// themselves. The next hop's IPv4 address is the gateway's underlay address,
// so the slot of a gateway is read back from the kernel after a restart
// (no state on disk). Re-pointing every namespace of one gateway is one
// next-hop replace.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

inline constexpr int kMaxSlots = 4095;
inline constexpr uint32_t kSteerMarkMask = 0x0fff0000;
// In a conntrack mark: the flow arrived through the tunnel and its replies
// go back to the slot's node (not: its packets go to the slot's gateway).
inline constexpr uint32_t kReturnFlag = 0x10000000;
inline constexpr uint32_t markOfSlot(int slot) {
  return static_cast<uint32_t>(slot) << 16;
}

// A node's tunnel MAC (locally administered, from its name: peers know it
// without asking) and the link-local IPv6 address derived from it (EUI-64).
inline std::string tunnelMac(const std::string& node) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : node) h = (h ^ ch) * 1099511628211ull;
  char buf[18];
  std::snprintf(buf, sizeof buf, "02:%02x:%02x:%02x:%02x:%02x", unsigned(h & 0xff),
                unsigned((h >> 8) & 0xff), unsigned((h >> 16) & 0xff), unsigned((h >> 24) & 0xff),
                unsigned((h >> 32) & 0xff));
  return buf;
}
inline IpAddress tunnelLinkLocal(const std::string& mac) {
  unsigned m[6] = {};
  std::sscanf(mac.c_str(), "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]);
  uint8_t b[16] = {0xfe, 0x80};
  b[8] = static_cast<uint8_t>(m[0] ^ 0x02);
  b[9] = static_cast<uint8_t>(m[1]);
  b[10] = static_cast<uint8_t>(m[2]);
  b[11] = 0xff;
  b[12] = 0xfe;
  b[13] = static_cast<uint8_t>(m[3]);
  b[14] = static_cast<uint8_t>(m[4]);
  b[15] = static_cast<uint8_t>(m[5]);
  return IpAddress::fromBytes(Family::V6, b);
}

// The next hop towards one gateway.
struct Hop {
  IpAddress via4;                 // the gateway's IPv4 underlay address
  std::optional<IpAddress> via6;  // IPv6 next hop (L2: its IPv6 underlay address;
                                  // tunnel: its link-local address on the tunnel)
  std::string dev;                // device the next hop is on
  std::string mac;                // tunnel: the gateway's tunnel MAC ("" on an L2 underlay)
  bool operator==(const Hop&) const = default;
};

// The VXLAN device (one per node; unicast, no learning; its MAC is derived
// from the node's name, so peers know it without asking).
struct TunnelSpec {
  std::string name;
  IpAddress local;  // this node's IPv4 underlay address
  uint32_t vni = 0;
  uint16_t port = 0;
  int mtu = 0;  // the underlay's MTU minus the encapsulation (50 bytes)
  std::string mac;
  std::string link;  // the underlay device
  bool operator==(const TunnelSpec&) const = default;
};

struct ObservedRoutes {
  std::optional<TunnelSpec> tunnel;  // our tunnel device, as found
  std::map<int, Hop> hops;           // slot -> next hop
  std::set<int> slots;               // slots whose rules and blackhole routes are in place
};

class RouteKernel {
 public:
  virtual ~RouteKernel() = default;
  virtual Result<ObservedRoutes> observe() = 0;
  // Creates the tunnel device, or replaces one that differs; sets its
  // rp_filter to loose (its packets are checked by the nft input rules).
  virtual Status ensureTunnel(const TunnelSpec& t) = 0;
  virtual Status deleteTunnel(const std::string& name) = 0;
  // The slot's rules (IPv4 and IPv6) and blackhole default routes.
  virtual Status addSlot(int slot) = 0;
  // The slot's next hops (replaced in place), the tunnel's neighbour and
  // forwarding entries for a tunnel hop, and the default routes via them.
  virtual Status setHop(int slot, const Hop& hop) = 0;
  // Removes the slot's next hops (their routes go with them; the blackhole
  // stays, so a flow still marked for the slot is dropped, never sent out
  // with the node's address) and the tunnel entries of the hop.
  virtual Status clearHop(int slot, const Hop& hop) = 0;
};

}  // namespace nsegress::gateway
