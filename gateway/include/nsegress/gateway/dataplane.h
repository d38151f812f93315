// The gateway data path as the planner sees it: what we observe in the kernel,
// the operations that change it, and the small interfaces that carry them out.
// Pure declarations: implementations of the interfaces live in netlink/ (real)
// and tests/mocks/ (fakes).
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
struct ObservedNft {
  bool table_present = false;
  // Table exists and has exactly the structure this version builds (chains,
  // rules, sets, fingerprint including the uplink name).
  bool structure_ok = false;
  std::map<IpAddress, IpAddress> snat;           // pod address -> egress address
  std::map<IpAddress, std::string> tx_counter;   // pod address -> namespace tx counter
  std::map<IpAddress, std::string> pending;      // pod address -> namespace drop counter
  std::set<IpAddress> owned;                     // egress addresses this agent put on the uplink
  std::map<IpAddress, IpAddress> flush_pending;  // pod -> old egress whose flows are still to flush
  std::map<std::string, std::pair<uint64_t, uint64_t>> counters;  // name -> {packets, bytes}
};

// One change inside the nftables transaction. Each op becomes exactly one
// netlink message, so a kernel error names the op that caused it.
struct NftOp {
  enum class Kind {
    kCreateTable,  // table + sets + chains + rules (fresh)
    kDeleteTable,  // used only to rebuild a table of the wrong structure, in the same transaction
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
  };
  Kind kind;
  std::string ns;       // namespace the op serves ("" for table-wide ops)
  IpAddress key;        // pod address or owned address
  IpAddress egress;     // for kAddSnat
  std::string counter;  // counter name (kAdd/DelCounter, kAddTx, kAddPending)

  std::string describe() const;
  bool operator==(const NftOp&) const = default;
};

struct ConntrackFlush {
  std::string ns;
  IpAddress egress;
  // Empty: every flow SNATed to `egress`. Otherwise only flows whose original
  // source is one of these (the egress address is still used by others).
  std::vector<IpAddress> sources;
  bool operator==(const ConntrackFlush&) const = default;
};

// A plan is executed in this order; each step only after the previous one
// succeeded. The order keeps ownership records ahead of effects so a crash at
// any point leaves a state the next reconcile can finish (docs/architecture.md).
struct Plan {
  std::vector<NftOp> intent;          // txn 1: record ownership of addresses about to be added
  std::vector<IpAddress> addr_add;    // add on uplink + gratuitous ARP
  std::vector<NftOp> main;            // txn 2: the atomic switch of maps/sets/counters
  std::vector<IpAddress> addr_del;    // remove from uplink
  std::vector<ConntrackFlush> flush;  // flows of released namespaces
  std::vector<NftOp> forget;          // txn 3: drop ownership and flush records now done

  bool empty() const {
    return intent.empty() && addr_add.empty() && main.empty() && addr_del.empty() &&
           flush.empty() && forget.empty();
  }
  size_t size() const {
    return intent.size() + addr_add.size() + main.size() + addr_del.size() + flush.size() +
           forget.size();
  }
};

// ---- side-effect interfaces -------------------------------------------------

class NftKernel {
 public:
  virtual ~NftKernel() = default;
  virtual Result<ObservedNft> observe() = 0;
  // Applies all ops as one transaction: all or nothing. On error, the message
  // names the op (by index and describe()) the kernel refused.
  virtual Status apply(const std::vector<NftOp>& ops) = 0;
};

class AddressKernel {
 public:
  virtual ~AddressKernel() = default;
  virtual Result<std::set<IpAddress>> list() = 0;  // addresses on the uplink
  virtual Status add(const IpAddress& a) = 0;      // EEXIST is success
  virtual Status remove(const IpAddress& a) = 0;   // ENOENT is success
};

// Announces an address that moved here (gratuitous ARP / unsolicited NA).
class Announcer {
 public:
  virtual ~Announcer() = default;
  virtual void announce(const IpAddress& a) = 0;
};

class ConntrackKernel {
 public:
  virtual ~ConntrackKernel() = default;
  virtual Result<size_t> flush(const ConntrackFlush& f) = 0;  // returns flows deleted
  virtual Result<std::map<IpAddress, size_t>> countByEgress() = 0;
};

// Names of kernel objects derived from a namespace name.
std::string txCounterName(const std::string& ns);
std::string dropCounterName(const std::string& ns);

}  // namespace nsegress::gateway
