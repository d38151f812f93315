// Fakes of the address port (gateway/ports/address.h), for unit tests of
// pure logic only; the real ones (netlink::UplinkAddresses, GarpAnnouncer)
// are exercised by tests/privileged.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "kernel_faults.h"
#include "nsegress/gateway/ports/address.h"

namespace nsegress::testing {

class FakeAddresses : public gateway::AddressKernel {
 public:
  std::set<IpAddress> addrs;
  std::vector<std::string> log;
  bool fail_add = false;
  KernelFaults* faults = nullptr;
  Result<std::set<IpAddress>> list() override { return addrs; }
  Status add(const IpAddress& a) override {
    if (fail_add) return makeError(EPERM, "add refused");
    if (faults)
      if (auto r = faults->before("add " + a.str()); !r) return r;
    log.push_back("add " + a.str());
    addrs.insert(a);
    if (faults) faults->after();
    return okStatus();
  }
  Status remove(const IpAddress& a) override {
    if (faults)
      if (auto r = faults->before("del " + a.str()); !r) return r;
    log.push_back("del " + a.str());
    addrs.erase(a);
    if (faults) faults->after();
    return okStatus();
  }
};

class FakeAnnouncer : public gateway::Announcer {
 public:
  std::vector<IpAddress> announced;
  void announce(const IpAddress& a) override { announced.push_back(a); }
};

}  // namespace nsegress::testing
