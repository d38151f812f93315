#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>

#include "lab.h"
#include "nsegress/common/desired_state.h"

namespace nsegress::testing {

// Every privileged test gets a fresh lab, removed also when the test fails.
class LabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0)
      GTEST_SKIP() << "needs root: creates network namespaces, nftables, conntrack";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string tag = info->name();
    tag = tag.substr(0, 10);
    for (auto& c : tag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lab = std::make_unique<lab::Lab>(tag);
  }
  void TearDown() override { lab.reset(); }
  std::unique_ptr<lab::Lab> lab;
};

struct NsSpec {
  std::string name;
  std::string egress;  // "" = no egress address (fail-closed)
  std::vector<std::string> pods;
};

inline std::string stateJson(const std::vector<NsSpec>& spec, uint64_t generation = 1) {
  DesiredState s;
  s.gateway = "gw";
  s.generation = generation;
  for (const auto& n : spec) {
    NamespaceEgress e;
    e.name = n.name;
    if (!n.egress.empty()) e.egress_v4 = *IpAddress::parse(n.egress);
    for (const auto& p : n.pods) e.pod_ips.push_back(*IpAddress::parse(p));
    s.namespaces.push_back(e);
  }
  return serializeDesiredState(s);
}

}  // namespace nsegress::testing
