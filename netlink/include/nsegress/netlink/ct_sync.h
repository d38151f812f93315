// Conntrack sync's kernel side (ports/ct_sync.h): an event socket subscribed
// to conntrack's new/update/destroy groups with a large receive buffer
// (SO_RCVBUFFORCE; overruns are reported, never silent), dumps of one
// address's source-NATed flows, and commits of synced flows with their
// translation (libmnl batches of ctnetlink messages built by
// libnetfilter_conntrack; an entry of the same original tuple is replaced).
#pragma once

#include <memory>

#include "nsegress/gateway/ports/ct_sync.h"

namespace nsegress::netlink {

class ConntrackSync final : public gateway::ConntrackSyncKernel {
 public:
  // In the calling thread's network namespace. `rcvbuf`: the event
  // socket's receive buffer in bytes. `updates`: also changes of existing
  // flows (TCP state, assured), not only their beginning and end.
  static Result<std::unique_ptr<ConntrackSync>> open(int rcvbuf = 32 << 20, bool updates = true);
  ~ConntrackSync() override;

  int eventFd() const override;
  Result<std::vector<ctsync::Change>> readEvents() override;
  Result<std::vector<ctsync::Flow>> dump(const std::set<IpAddress>& egress) override;
  Result<gateway::CommitCount> commit(const std::vector<ctsync::Flow>& flows) override;

 private:
  struct Impl;
  explicit ConntrackSync(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nsegress::netlink
