// Provider `addresses`: the egress addresses on the uplink. An address is
// recorded as ours (owned4/6 in the table) before it is added, and the
// record is dropped only after the address is gone and its flows are
// flushed, so a crash at any point leaves a record the next reconcile acts
// on. An address already on the uplink that we did not add (the node's own,
// or an operator's) is used for SNAT but never claimed and never removed.
#pragma once

#include <map>
#include <set>

#include "nsegress/gateway/nft_session.h"
#include "nsegress/gateway/ports/address.h"
#include "nsegress/gateway/ports/conntrack.h"

namespace nsegress::gateway {

struct AddressPlan {
  std::vector<NftOp> intent;          // install: record ownership of addresses about to be added
  std::vector<IpAddress> add;         // install: add on the uplink, then announce
  std::vector<IpAddress> remove;      // retire: remove from the uplink
  std::vector<ConntrackFlush> flush;  // retire: every flow of an address leaving the node
  std::vector<NftOp> forget;          // retire: ownership records now done
  bool empty() const {
    return intent.empty() && add.empty() && remove.empty() && flush.empty() && forget.empty();
  }
  size_t size() const {
    return intent.size() + add.size() + remove.size() + flush.size() + forget.size();
  }
};

// Egress addresses the desired state uses (both families).
std::set<IpAddress> wantedEgress(const DesiredState& d);

// Pure. `uplink`: addresses on the uplink now.
AddressPlan planAddresses(const DesiredState& d, const ObservedNft& nft,
                          const std::set<IpAddress>& uplink);

class AddressProvider final : public Provider {
 public:
  AddressProvider(NftSession& s, AddressKernel& a, Announcer& ann, ConntrackKernel& ct)
      : s_(s), a_(a), ann_(ann), ct_(ct) {}
  std::string_view name() const override { return "addresses"; }
  Status observe() override;
  bool hasModel() const override { return s_.hasModel() && uplink_.has_value(); }
  void dropModel() override { uplink_.reset(); }
  Status install(const DesiredState& desired, ExecStats& stats) override;
  Status retire(const DesiredState& desired, ExecStats& stats) override;
  const std::set<IpAddress>& uplink() const { return *uplink_; }

 private:
  NftSession& s_;
  AddressKernel& a_;
  Announcer& ann_;
  ConntrackKernel& ct_;
  std::optional<std::set<IpAddress>> uplink_;
  std::map<IpAddress, std::string> last_users_;  // egress -> a namespace that used it (for logs)
};

}  // namespace nsegress::gateway
