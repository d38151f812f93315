// Port: egress addresses on the uplink and their announcement. Real:
// netlink::UplinkAddresses, netlink::GarpAnnouncer. Fakes:
// tests/mocks/fake_addresses.h.
#pragma once

#include <set>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::gateway {

class AddressKernel {
 public:
  virtual ~AddressKernel() = default;
  virtual Result<std::set<IpAddress>> list() = 0;  // addresses on the uplink
  virtual Status add(const IpAddress& a) = 0;      // EEXIST is success
  virtual Status remove(const IpAddress& a) = 0;   // ENOENT is success
};

// Announces an address that moved here (gratuitous ARP / unsolicited NA).
class Announcer {
 public:
  virtual ~Announcer() = default;
  virtual void announce(const IpAddress& a) = 0;
};

}  // namespace nsegress::gateway
