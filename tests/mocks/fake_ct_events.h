// A fake of conntrack's event socket and dump (gateway/ports/ct_sync.h) for
// unit tests of what consumes them (the flow log). Named as a fake: the
// real socket is exercised by the privileged tests and benchmark 7.
#pragma once

#include <deque>

#include "nsegress/gateway/ports/ct_sync.h"

namespace nsegress::testing {

class FakeConntrackEvents final : public gateway::ConntrackSyncKernel {
 public:
  std::deque<ctsync::Change> queued;
  std::vector<ctsync::Flow> existing;  // what a dump returns
  bool overrun = false;                // the next read reports ENOBUFS
  bool dump_fails = false;
  size_t dumps = 0;
  int eventFd() const override { return -1; }
  Result<std::vector<ctsync::Change>> readEvents() override {
    if (overrun) {
      overrun = false;
      queued.clear();  // what the kernel dropped
      return makeError(ENOBUFS, "fake: the kernel dropped events");
    }
    std::vector<ctsync::Change> out(queued.begin(), queued.end());
    queued.clear();
    return out;
  }
  Result<std::vector<ctsync::Flow>> dump(const std::set<IpAddress>& egress) override {
    ++dumps;
    if (dump_fails) return makeError(EIO, "fake: dump failed");
    std::vector<ctsync::Flow> out;
    for (const auto& f : existing)
      if (egress.count(f.egress)) out.push_back(f);
    return out;
  }
  Result<gateway::CommitCount> commit(const std::vector<ctsync::Flow>&) override {
    return gateway::CommitCount{};
  }
};

}  // namespace nsegress::testing
