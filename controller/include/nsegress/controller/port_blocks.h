// Attribution by port (RFC 7422 deterministic NAT), the pure part: which pod
// holds which block of source ports on its namespace's egress address.
//
// A block is held while its pod lives (same name, same address) and its
// address is assigned and usable; then it is closed (its `to` set) and kept
// in the ledger, so "who was behind ADDRESS:PORT at T" is answered after the
// pod is gone. A new pod gets the free block given back longest ago (never
// used ones first, lowest first): a block's previous holder's connections
// have the longest time to end before its ports are used again.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nsegress/controller/allocator.h"

namespace nsegress::controller {

// What the ledger holds of port blocks.
struct BlockBook {
  std::vector<PortBlock> held;
  // When each block (address, first port) was last given back.
  std::map<std::pair<IpAddress, uint16_t>, Seconds> last_closed;
  bool operator==(const BlockBook&) const = default;
};

struct BlockPlan {
  std::vector<PortBlock> opened;  // new blocks (held)
  std::vector<PortBlock> closed;  // blocks given back (`to` set)
  // Pods that need a block and found none (their address's blocks are all
  // held): "namespace/pod", fail-closed on the gateway.
  std::vector<std::string> starved;
  bool empty() const { return opened.empty() && closed.empty(); }
};

BlockPlan planPortBlocks(const World& world, const Ledger& ledger, const BlockBook& book,
                         Seconds now);
void applyBlockPlan(BlockBook& book, const BlockPlan& plan);

// The block that held `port` on `egress` at `at`, from a list of blocks
// (held and closed); the latest one if several match (a block is never held
// twice at once).
std::optional<PortBlock> blockAt(const std::vector<PortBlock>& blocks, const IpAddress& egress,
                                 uint16_t port, Seconds at);

// Per pool: blocks per address, held blocks, pods without one.
struct BlockUsage {
  uint64_t per_address = 0, held = 0, starved = 0;
};
std::map<std::string, BlockUsage> blockUsage(const World& world, const Ledger& ledger,
                                             const BlockBook& book, const BlockPlan& last);

}  // namespace nsegress::controller
