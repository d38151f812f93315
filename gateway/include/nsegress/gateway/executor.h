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
};

struct Kernel {
  NftKernel& nft;
  AddressKernel& addresses;
  Announcer& announcer;
  ConntrackKernel& conntrack;
};

Status execute(const Plan& plan, Kernel& k, ExecStats* stats);

}  // namespace nsegress::gateway
