// Conntrack (libnetfilter_conntrack): flush the flows SNATed to an egress
// address, count flows per egress address.
#pragma once

#include <memory>

#include "nsegress/gateway/ports/conntrack.h"

namespace nsegress::netlink {

class Conntrack final : public gateway::ConntrackKernel {
 public:
  // Opens ctnetlink handles in the calling thread's network namespace.
  static Result<std::unique_ptr<Conntrack>> open();
  ~Conntrack() override;

  // Dumps only source-NATed flows of the address family (filtered in the
  // kernel by L3 protocol and the IPS_SRC_NAT status bit), matches the reply
  // destination (= the SNAT address) and deletes each match. ENOENT on delete
  // (the flow ended meanwhile) is not an error.
  Result<size_t> flush(const gateway::ConntrackFlush& f) override;
  Result<std::map<IpAddress, size_t>> countByEgress() override;
  Result<gateway::FlowCensus> census(bool per_destination = true) override;
  // Dumps the family's flows whose mark matches (filtered in the kernel),
  // then updates the mark of those from `sources` (ENOENT: ended meanwhile).
  Result<size_t> repin(const gateway::ConntrackRepin& r) override;

 private:
  struct Impl;
  explicit Conntrack(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nsegress::netlink
