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
#include <string>
#include <vector>

#include "nsegress/gateway/ports/nft.h"

namespace nsegress::netlink {

struct NftConfig {
  std::string table = "nsegress";  // family inet
  std::string uplink;              // SNAT applies to traffic leaving this interface
  int forward_priority = -10;      // before the usual filter chains
  int nat_priority = 99;           // srcnat - 1: our SNAT wins over later masquerade
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
  static constexpr const char* kForward = "forward";
  static constexpr const char* kPostrouting = "postrouting";
};

// Fingerprint stored as table user data; a mismatch means "rebuild".
std::string structureFingerprint(const NftConfig& c);

class NftBuilder {
 public:
  NftBuilder(NftConfig config, uint32_t first_seq);
  ~NftBuilder();
  NftBuilder(const NftBuilder&) = delete;
  NftBuilder& operator=(const NftBuilder&) = delete;

  // Appends the netlink message(s) of `op`, remembering them as `op_index`.
  void append(const gateway::NftOp& op, size_t op_index);
  // Closes the batch (BATCH_BEGIN ... BATCH_END) and returns its bytes.
  const std::vector<char>& finish();

  // Which op a kernel error with this sequence number belongs to.
  std::optional<size_t> opForSeq(uint32_t seq) const;
  size_t messages() const { return seq_to_op_.size(); }
  uint32_t nextSeq() const { return seq_; }

  // Rules of the table as libnftnl renders them ("[ meta load ... ]"), for
  // golden tests and debugging.
  static std::vector<std::string> renderRules(const NftConfig& config);

 private:
  void* reserve();  // room for one more message at the end of the buffer
  void commit(uint32_t seq, size_t op_index);
  void createTable(size_t op_index);

  NftConfig cfg_;
  uint32_t first_seq_;
  uint32_t seq_;
  std::vector<char> buf_;
  size_t len_ = 0;
  bool finished_ = false;
  std::vector<std::pair<uint32_t, size_t>> seq_to_op_;
};

class NftTable final : public gateway::NftKernel {
 public:
  // Opens a netfilter netlink socket in the calling thread's network namespace.
  static Result<std::unique_ptr<NftTable>> open(NftConfig config);
  ~NftTable() override;

  Result<gateway::ObservedNft> observe() override;
  Status apply(const std::vector<gateway::NftOp>& ops) override;

  // Removes the whole table (operator `--cleanup`, tests).
  Status destroy();
  const NftConfig& config() const { return cfg_; }
  // Messages in the last applied batch (for metrics and benchmarks).
  size_t lastBatchMessages() const { return last_messages_; }

 private:
  struct Impl;
  explicit NftTable(NftConfig config, std::unique_ptr<Impl> impl);
  NftConfig cfg_;
  std::unique_ptr<Impl> impl_;
  uint32_t seq_;
  size_t last_messages_ = 0;
};

}  // namespace nsegress::netlink
