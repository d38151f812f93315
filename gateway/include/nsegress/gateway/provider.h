// A data-path provider: one concern of the node's kernel state (in the manner
// of FRR's dataplane providers), with its own port, fake and plan. The
// Dataplane (dataplane.h) runs every provider's install() in order, then
// every provider's retire() in reverse order, so across concerns everything
// new is in place before anything old goes (make before break).
//
// Providers today, in order:
//   table      the nftables table's structure (create, rebuild)   table_provider.h
//   addresses  egress addresses on the uplink, their ownership    address_provider.h
//              records and announcements
//   snat       SNAT, accounting and fail-closed maps, counters,     snat_provider.h
//              conntrack flushes of changed mappings
// Next: steering (routes, rules, tunnels), the ownership protocol,
// conntrack sync.
#pragma once

#include <string_view>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

struct ExecStats {
  size_t planned_ops = 0;  // operations planned (nft ops, address changes, flushes)
  size_t nft_ops = 0;
  size_t transactions = 0;
  size_t addresses_added = 0;
  size_t addresses_removed = 0;
  size_t flows_flushed = 0;
  size_t route_ops = 0;        // steering: tunnel, slot, next-hop changes
  double nft_seconds = 0;      // time in nftables transactions
  double address_seconds = 0;  // time adding/removing addresses
  double flush_seconds = 0;    // time flushing conntrack
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual std::string_view name() const = 0;
  // Reads the kernel state this provider owns into its model (a full read:
  // on start, on resync, after any failure).
  virtual Status observe() = 0;
  virtual bool hasModel() const = 0;
  virtual void dropModel() = 0;
  // Puts in place what `desired` needs, without removing anything a provider
  // earlier in the order may still rely on.
  virtual Status install(const DesiredState& desired, ExecStats& stats) = 0;
  // Removes what `desired` no longer needs.
  virtual Status retire(const DesiredState& desired, ExecStats& stats) = 0;
};

}  // namespace nsegress::gateway
