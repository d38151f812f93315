// Port: is the uplink usable (administratively up with carrier)? Real:
// netlink::UplinkAddresses (SIOCGIFFLAGS: IFF_UP and IFF_RUNNING). A node
// whose uplink is down uses no egress address and claims none, so its
// standby takes its addresses over (docs/architecture.md, "Failover").
#pragma once

namespace nsegress::gateway {

class LinkState {
 public:
  virtual ~LinkState() = default;
  virtual bool up() = 0;
};

}  // namespace nsegress::gateway
