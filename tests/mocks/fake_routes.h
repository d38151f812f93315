// Fake of the steering routes port (gateway/ports/routes.h), for unit tests
// of pure logic only; the real one (netlink::SteerRoutes) is exercised by
// the cluster-lab tests in tests/privileged/steering_test.cc.
#pragma once

#include <string>
#include <vector>

#include "kernel_faults.h"
#include "nsegress/gateway/ports/routes.h"

namespace nsegress::testing {

class FakeRoutes : public gateway::RouteKernel {
 public:
  gateway::ObservedRoutes state;
  std::vector<std::string> log;
  KernelFaults* faults = nullptr;

  Result<gateway::ObservedRoutes> observe() override { return state; }
  Status ensureTunnel(const gateway::TunnelSpec& t) override {
    if (auto r = step("tunnel " + t.name); !r) return r;
    // A new device: whatever was on the old one is gone.
    state.tunnel = t;
    std::erase_if(state.hops, [&](const auto& kv) { return kv.second.dev == t.name; });
    return done();
  }
  Status deleteTunnel(const std::string& name) override {
    if (auto r = step("delete tunnel " + name); !r) return r;
    state.tunnel.reset();
    return done();
  }
  Status addSlot(int slot) override {
    if (auto r = step("slot " + std::to_string(slot)); !r) return r;
    state.slots.insert(slot);
    return done();
  }
  Status setHop(int slot, const gateway::Hop& hop) override {
    if (auto r = step("hop " + std::to_string(slot) + " via " + hop.via4.str()); !r) return r;
    state.hops[slot] = hop;
    return done();
  }
  Status clearHop(int slot, const gateway::Hop&) override {
    if (auto r = step("clear " + std::to_string(slot)); !r) return r;
    state.hops.erase(slot);
    return done();
  }

 private:
  Status step(const std::string& what) {
    if (faults)
      if (auto r = faults->before(what); !r) return r;
    log.push_back(what);
    return okStatus();
  }
  Status done() {
    if (faults) faults->after();
    return okStatus();
  }
};

}  // namespace nsegress::testing
