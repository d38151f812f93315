// Executes a Plan against the kernel interfaces, step by step, stopping at the
// first failure. Re-running the planner afterwards finishes the job: every
// step is idempotent and ordered so that a partial run is safe (see Plan).
#pragma once

#include "nsegress/gateway/dataplane.h"

namespace nsegress::gateway {

struct ExecStats {
  size_t nft_ops = 0;
  size_t transactions = 0;
  size_t addresses_added = 0;
  size_t addresses_removed = 0;
  size_t flows_flushed = 0;
  double nft_seconds = 0;      // time in nftables transactions
  double address_seconds = 0;  // time adding/removing addresses
  double flush_seconds = 0;    // time flushing conntrack
};

struct Kernel {
  NftKernel& nft;
  AddressKernel& addresses;
  Announcer& announcer;
  ConntrackKernel& conntrack;
};

Status execute(const Plan& plan, Kernel& k, ExecStats* stats);

}  // namespace nsegress::gateway
