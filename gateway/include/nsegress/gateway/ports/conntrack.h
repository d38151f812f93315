// Port: the conntrack table (flows SNATed to our addresses). Real:
// netlink::Conntrack. Fake: tests/mocks/fake_conntrack.h.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

struct ConntrackFlush {
  std::string ns;
  IpAddress egress;
  // Empty: every flow SNATed to `egress`. Otherwise only flows whose original
  // source is one of these (the egress address is still used by others).
  std::vector<IpAddress> sources;
  bool operator==(const ConntrackFlush&) const = default;
};

// Re-pins steered flows: flows whose original source is one of `sources`
// and whose conntrack mark, masked by `mask`, is `from` get `to` in place of
// those bits (their packets follow the new gateway at once).
struct ConntrackRepin {
  std::vector<IpAddress> sources;
  uint32_t from = 0;
  uint32_t to = 0;
  uint32_t mask = 0;
  bool operator==(const ConntrackRepin&) const = default;
};

// One full read of the source-NATed flows: per egress address, and per pod
// the flows to its busiest destination (protocol, address, port) — what a
// port block must hold, since a source port can be reused towards another
// destination.
struct FlowCensus {
  std::map<IpAddress, size_t> by_egress;
  std::map<IpAddress, size_t> busiest_destination;  // pod -> flows
};

class ConntrackKernel {
 public:
  virtual ~ConntrackKernel() = default;
  virtual Result<size_t> flush(const ConntrackFlush& f) = 0;  // returns flows deleted
  virtual Result<std::map<IpAddress, size_t>> countByEgress() = 0;
  // `per_destination`: also busiest_destination (only port blocks need it).
  virtual Result<FlowCensus> census(bool per_destination = true) = 0;
  virtual Result<size_t> repin(const ConntrackRepin& r) = 0;  // returns flows re-pinned
};

}  // namespace nsegress::gateway
