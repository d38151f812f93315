// nftables through netlink batches (libnftnl builds, libmnl talks).
//
// NftBuilder is pure: it turns gateway::NftOps into one netlink batch in a
// byte buffer and remembers which sequence number belongs to which op. It
// needs no privileges and is unit-tested. NftTable owns the socket: it sends
// one batch per apply() (one kernel transaction) and reads the kernel's state
// back for observe().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/gateway/ports/nft.h"

namespace nsegress::netlink {

struct NftConfig {
  std::string table = "nsegress";  // family inet
  std::string uplink;              // SNAT applies to traffic leaving this interface
  int forward_priority = -10;      // before the usual filter chains
  int nat_priority = 99;           // srcnat - 1: our SNAT wins over later masquerade
  int input_priority = -10;        // before the usual filter chains
  // Egress addresses this agent owns accept replies only (new inbound
  // connections to them are dropped and counted).
  bool drop_inbound = true;

  // Steering (docs/life-of-a-packet.md). New flows of local pods in the
  // steer maps get the map's mark in their conntrack entry; every packet of
  // the original direction carries it as its packet mark (policy routing
  // sends it to the gateway's next hop); the node never masquerades them.
  bool steer = false;
  int steer_priority = -90;           // prerouting, after kube-proxy's DNAT (-100)
  uint32_t mark_mask = 0x0fff0000;    // the mark bits naming a slot
  uint32_t return_flag = 0x10000000;  // ct mark: replies go back through the tunnel
  std::string tunnel;                 // the tunnel device ("" with an L2 underlay)
  std::string underlay;               // the device towards the other nodes
  uint16_t tunnel_port = 0;           // its UDP port (tunnel packets are checked on input)
  uint16_t mss4 = 0, mss6 = 0;        // TCP MSS clamp of steered flows (0: none)
  std::vector<Cidr> cluster;          // destinations inside the cluster: never steered or held
  // The uplink faces only the outside world: a packet arriving on it with a
  // pod's source address is forged (dropped and counted).
  bool uplink_dedicated = false;
};

// Names of the sets inside the table (also used by tests and docs).
struct NftNames {
  static constexpr const char* kSnat4 = "snat4";
  static constexpr const char* kSnat6 = "snat6";
  static constexpr const char* kTx4 = "tx4";
  static constexpr const char* kTx6 = "tx6";
  static constexpr const char* kPending4 = "pending4";
  static constexpr const char* kPending6 = "pending6";
  static constexpr const char* kOwned4 = "owned4";
  static constexpr const char* kOwned6 = "owned6";
  static constexpr const char* kFlush4 = "flush4";
  static constexpr const char* kFlush6 = "flush6";
  static constexpr const char* kSteer4 = "steer4";
  static constexpr const char* kSteer6 = "steer6";
  static constexpr const char* kReturn4 = "return4";
  static constexpr const char* kReturn6 = "return6";
  static constexpr const char* kPeers4 = "peers4";
  static constexpr const char* kPeers6 = "peers6";
  static constexpr const char* kNodes4 = "nodes4";
  static constexpr const char* kBlocks4 = "blocks4";  // pod -> egress . port range
  static constexpr const char* kBlocks6 = "blocks6";
  static constexpr const char* kSteer = "steer";
  static constexpr const char* kForward = "forward";
  static constexpr const char* kPostrouting = "postrouting";
  static constexpr const char* kInput = "input";
};

// Fingerprint stored as table user data; a mismatch means "rebuild".
std::string structureFingerprint(const NftConfig& c);

class NftBuilder {
 public:
  NftBuilder(NftConfig config, uint32_t first_seq);
  ~NftBuilder();
  NftBuilder(const NftBuilder&) = delete;
  NftBuilder& operator=(const NftBuilder&) = delete;

  // Element ops in a row on the same set and in the same direction share one
  // message (as nftables' mnl_nft_setelem_batch does), up to this many.
  static constexpr size_t kElementsPerMessage = 256;

  // Appends `op` as op number `op_index`.
  void append(const gateway::NftOp& op, size_t op_index);
  // Closes the batch (BATCH_BEGIN ... BATCH_END) and returns its bytes.
  const std::vector<char>& finish();

  // Which op a kernel error belongs to: the message's sequence number, and
  // (for a message of several elements) the offset of the offending
  // attribute the kernel reports with extended acks (NLMSGERR_ATTR_OFFS).
  std::optional<size_t> opFor(uint32_t seq, std::optional<uint32_t> attr_offset = {}) const;
  // The ops a message carries ([first, last] op index), for an error without
  // an offset.
  std::optional<std::pair<size_t, size_t>> opsOf(uint32_t seq) const;
  size_t messages() const { return msgs_.size(); }
  uint32_t nextSeq() const { return seq_; }

  // Rules of the table as libnftnl renders them ("[ meta load ... ]"), for
  // golden tests and debugging.
  static std::vector<std::string> renderRules(const NftConfig& config);

 private:
  struct Msg {
    uint32_t seq;
    std::vector<size_t> ops;        // op index of each element (one entry: a one-op message)
    std::vector<uint32_t> offsets;  // each element's attribute offset in the message
  };
  struct Group;                 // element ops waiting to share a message
  void* reserve(size_t bytes);  // zeroed room for one message at the end of the buffer
  void commit(uint32_t seq, size_t op_index);
  void createTable(size_t op_index);
  void flushGroup();
  const Msg* find(uint32_t seq) const;

  NftConfig cfg_;
  uint32_t seq_;
  std::vector<char> buf_;
  size_t len_ = 0;
  bool finished_ = false;
  std::vector<Msg> msgs_;  // by increasing seq
  std::unique_ptr<Group> group_;
};

class NftTable final : public gateway::NftKernel {
 public:
  // Opens a netfilter netlink socket in the calling thread's network namespace.
  static Result<std::unique_ptr<NftTable>> open(NftConfig config);
  ~NftTable() override;

  Result<gateway::ObservedNft> observe() override;
  Status apply(const std::vector<gateway::NftOp>& ops) override;

  // Removes the whole table (operator `--cleanup`, tests); absent is success.
  // The same batch path as apply().
  Status destroy();
  const NftConfig& config() const { return cfg_; }
  // Messages in the last applied batch (for metrics and benchmarks).
  size_t lastBatchMessages() const { return last_messages_; }

  struct Impl;  // the socket, its sequence numbers and receive buffer (nft.cc)

 private:
  explicit NftTable(NftConfig config, std::unique_ptr<Impl> impl);
  NftConfig cfg_;
  std::unique_ptr<Impl> impl_;
  size_t last_messages_ = 0;
};

}  // namespace nsegress::netlink
