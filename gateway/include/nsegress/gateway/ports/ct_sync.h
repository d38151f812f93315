// Port: the conntrack table as conntrack sync sees it — the event stream of
// source-NATed flows, a dump of one address's flows, and committing synced
// flows at a takeover. Real: netlink::ConntrackSync. Fake:
// tests/mocks/fake_ct_sync.h.
#pragma once

#include <set>
#include <vector>

#include "nsegress/common/ct_sync_wire.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

struct CommitCount {
  size_t created = 0;
  size_t replaced = 0;  // a local entry of the same flow (a steered one) gave way
  size_t failed = 0;
  int first_error = 0;  // errno of the first failure
};

class ConntrackSyncKernel {
 public:
  virtual ~ConntrackSyncKernel() = default;
  // Readable when events wait.
  virtual int eventFd() const = 0;
  // What is queued, without blocking: source-NATed TCP/UDP flows created,
  // changed (TCP state, assured) or destroyed. The error ENOBUFS means the
  // kernel dropped events (the caller counts it and resyncs).
  virtual Result<std::vector<ctsync::Change>> readEvents() = 0;
  // Every source-NATed TCP/UDP flow whose SNAT address is in `egress`.
  virtual Result<std::vector<ctsync::Flow>> dump(const std::set<IpAddress>& egress) = 0;
  // Creates each flow with its translation (same address and port),
  // replacing an entry of the same original tuple.
  virtual Result<CommitCount> commit(const std::vector<ctsync::Flow>& flows) = 0;
};

}  // namespace nsegress::gateway
