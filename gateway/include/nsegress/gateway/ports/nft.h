// Port: the nftables table nsegress owns (`inet nsegress`). What we observe in
// it, the operations that change it, and the interface that carries them
// out. Real: netlink::NftTable. Fake: tests/mocks/fake_nft.h.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

// What nsegress owns inside its nftables table, as read back from the kernel.
// A pod's port block as the kernel holds it: translated to `egress`, source
// ports first..last (attribution by port).
struct BlockValue {
  IpAddress egress;
  uint16_t first = 0, last = 0;
  bool operator==(const BlockValue&) const = default;
};

struct ObservedNft {
  bool table_present = false;
  // Table exists and has exactly the structure this version builds (chains,
  // rules, sets, fingerprint including the uplink name).
  bool structure_ok = false;
  std::map<IpAddress, IpAddress> snat;           // pod address -> egress address
  std::map<IpAddress, BlockValue> blocks;        // pod address -> egress . port range (TCP, UDP)
  std::map<IpAddress, std::string> tx_counter;   // pod address -> namespace tx counter
  std::map<IpAddress, std::string> pending;      // pod address -> namespace drop counter
  std::set<IpAddress> owned;                     // egress addresses this agent put on the uplink
  std::map<IpAddress, IpAddress> flush_pending;  // pod -> old egress whose flows are still to flush
  // Steering (steer_provider.h): local pod -> the mark of the gateway its new
  // flows go to; (node underlay address, pod) pairs a tunnel accepts; the
  // nodes whose tunnel packets are accepted at all.
  std::map<IpAddress, uint32_t> steer;
  std::map<IpAddress, uint32_t> returns;  // remote pod -> the mark routing replies back to its node
  std::set<std::pair<IpAddress, IpAddress>> peers;  // (node, pod)
  std::set<IpAddress> nodes;
  std::map<std::string, std::pair<uint64_t, uint64_t>> counters;  // name -> {packets, bytes}
};

// One change inside an nftables transaction. The kernel reports an error
// against the netlink message that caused it, and the builder maps every
// message back to its ops, so an error names its op: consecutive element
// ops on one set share a message (up to 256 elements; the kernel's
// extended ack names the element refused); kCreateTable is several
// messages (table, sets, chains, rules) that all name it.
struct NftOp {
  enum class Kind {
    kCreateTable,  // table + sets + chains + rules (fresh)
    kDeleteTable,  // a rebuild (same transaction as the create) or `--cleanup`
    kAddCounter,   // named counter `counter`
    kDelCounter,
    kAddSnat,  // snat map: key -> egress
    kDelSnat,
    kAddTx,  // tx accounting map: key -> counter
    kDelTx,
    kAddPending,  // fail-closed map: key -> drop counter
    kDelPending,
    kAddOwned,  // ownership record of an egress address on the uplink
    kDelOwned,
    kAddFlushRec,  // record: flows of pod `key` SNATed to `egress` must be flushed
    kDelFlushRec,
    kAddSteer,  // steering map: pod `key` -> `mark` (the gateway its new flows go to)
    kDelSteer,
    kAddPeer,  // tunnel peer: pod `key` lives on the node whose underlay address is `egress`
    kDelPeer,
    kAddNode,  // a node (underlay address `key`) whose tunnel packets are accepted
    kDelNode,
    kAddReturn,  // return map: remote pod `key` -> `mark` (replies go back through its node)
    kDelReturn,
    kAddBlock,  // port blocks map: pod `key` -> `egress` . `first`-`last` (TCP and UDP)
    kDelBlock,
  };
  Kind kind;
  std::string ns;                // namespace the op serves ("" for table-wide ops)
  IpAddress key;                 // pod address or owned address
  IpAddress egress;              // for kAddSnat, kAddFlushRec
  std::string counter;           // counter name (kAdd/DelCounter, kAddTx, kAddPending)
  uint32_t mark = 0;             // for kAddSteer, kAddReturn
  uint16_t first = 0, last = 0;  // for kAddBlock: the source ports

  std::string describe() const;
  bool operator==(const NftOp&) const = default;
};

class NftKernel {
 public:
  virtual ~NftKernel() = default;
  virtual Result<ObservedNft> observe() = 0;
  // Applies all ops as one transaction: all or nothing. On error, the message
  // names the op (by index and describe()) the kernel refused.
  virtual Status apply(const std::vector<NftOp>& ops) = 0;
};

// Names of kernel objects derived from a namespace name.
std::string txCounterName(const std::string& ns);
std::string dropCounterName(const std::string& ns);
// The drop counter of blocked addresses (claimed by two namespaces); not a
// namespace name (those never start with "blocked" followed by nothing).
inline constexpr const char* kBlockedCounter = "blocked";
// Counters the table is created with (named by its rules): forged source
// addresses dropped, new inbound connections to egress addresses dropped.
inline constexpr const char* kSpoofedCounter = "spoofed";
inline constexpr const char* kInboundCounter = "inbound";
// Steering: a tunnel packet from an address that is not a node of the
// cluster; a steered packet whose inner source is not a pod of the node that
// sent it; a packet arriving on a dedicated uplink with a pod's address.
inline constexpr const char* kTunnelForeignCounter = "tunnel-foreign";
inline constexpr const char* kSteerSpoofedCounter = "steer-spoofed";
inline constexpr const char* kUplinkSpoofedCounter = "uplink-spoofed";
// A steered pod's packet that would leave unsteered (a flow older than its
// steering, an invalid or untracked packet, a route that is not steering's).
inline constexpr const char* kUnsteeredCounter = "unsteered";
inline constexpr const char* kBuiltinCounters[] = {kSpoofedCounter,       kInboundCounter,
                                                   kTunnelForeignCounter, kSteerSpoofedCounter,
                                                   kUplinkSpoofedCounter, kUnsteeredCounter};
// The namespace a counter of ours counts for ("" if not ours).
std::string namespaceOfCounter(const std::string& counter);
bool isOurCounter(const std::string& name);

}  // namespace nsegress::gateway
