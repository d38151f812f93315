// Fake of the conntrack port (gateway/ports/conntrack.h), for unit tests of
// pure logic only; the real one (netlink::Conntrack) is exercised by
// tests/privileged.
#pragma once

#include <algorithm>
#include <vector>

#include "kernel_faults.h"
#include "nsegress/gateway/ports/conntrack.h"

namespace nsegress::testing {

class FakeConntrack : public gateway::ConntrackKernel {
 public:
  // flows: (original source, egress)
  std::vector<std::pair<IpAddress, IpAddress>> flows;
  std::vector<gateway::ConntrackFlush> flushes;
  KernelFaults* faults = nullptr;
  Result<size_t> flush(const gateway::ConntrackFlush& f) override {
    if (faults)
      if (auto r = faults->before("flush " + f.egress.str()); !r) return r.error();
    flushes.push_back(f);
    size_t before = flows.size();
    std::erase_if(flows, [&](const auto& fl) {
      if (fl.second != f.egress) return false;
      return f.sources.empty() ||
             std::find(f.sources.begin(), f.sources.end(), fl.first) != f.sources.end();
    });
    if (faults) faults->after();
    return before - flows.size();
  }
  std::vector<gateway::ConntrackRepin> repins;
  Result<size_t> repin(const gateway::ConntrackRepin& r) override {
    if (faults)
      if (auto st = faults->before("repin"); !st) return st.error();
    repins.push_back(r);
    if (faults) faults->after();
    return r.sources.size();
  }
  Result<std::map<IpAddress, size_t>> countByEgress() override {
    std::map<IpAddress, size_t> out;
    for (const auto& f : flows) out[f.second]++;
    return out;
  }
  // (The fake's flows have no destination: each pod's flows count as one.)
  Result<gateway::FlowCensus> census(bool = true) override {
    gateway::FlowCensus c;
    for (const auto& f : flows) {
      c.by_egress[f.second]++;
      c.busiest_destination[f.first]++;
    }
    return c;
  }
};

}  // namespace nsegress::testing
