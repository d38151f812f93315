// Fake of gateway::FenceKernel (ports/fence.h): remembers the last fence.
#pragma once

#include "nsegress/gateway/ports/fence.h"

namespace nsegress::testing {

class FakeFence final : public gateway::FenceKernel {
 public:
  Status apply(const std::set<IpAddress>& hostable,
               const std::map<IpAddress, std::optional<std::chrono::milliseconds>>& live) override {
    ++applies;
    this->hostable = hostable;
    this->live = live;
    return okStatus();
  }
  std::set<IpAddress> hostable;
  std::map<IpAddress, std::optional<std::chrono::milliseconds>> live;
  int applies = 0;
};

}  // namespace nsegress::testing
