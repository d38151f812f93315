// Provider `steering`: sends every local pod's egress of a namespace hosted
// on another node to that node (docs/life-of-a-packet.md).
//
//   install: the tunnel device; each gateway's slot and next hop (in place
//            before any pod is marked for it); steer-map adds and changes
//            (a changed mark re-points new flows only: established flows
//            keep the mark in their conntrack entry); tunnel peers and
//            nodes added.
//   retire:  steer-map, peer and node removals; next hops of gateways no
//            longer used (their slot keeps its blackhole).
//
// Pure planning (steerView, planSteering) is unit-tested on fakes; the
// kernel is reached through ports/routes.h and the shared NftSession.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nsegress/gateway/nft_session.h"
#include "nsegress/gateway/ports/conntrack.h"
#include "nsegress/gateway/ports/routes.h"

namespace nsegress::gateway {

struct SteerConfig {
  bool tunnel = true;  // false: nodes share one L2 segment (a direct next hop)
  std::string device;  // the underlay device (L2 next hops; the tunnel's link)
  std::string tunnel_name = "nsegress0";
  uint32_t vni = 0x4e5347;
  uint16_t port = 4793;
  int underlay_mtu = 1500;

  int tunnelMtu() const { return underlay_mtu - 50; }  // IPv4 + UDP + VXLAN + Ethernet
  // MSS of steered TCP (0: no clamp on an L2 underlay).
  uint16_t mss4() const { return tunnel ? static_cast<uint16_t>(tunnelMtu() - 40) : 0; }
  uint16_t mss6() const { return tunnel ? static_cast<uint16_t>(tunnelMtu() - 60) : 0; }
};

// What steering wants on this node, from the desired state. Pure.
struct SteerView {
  std::optional<TunnelSpec> tunnel;
  std::map<std::string, Hop> hops;           // node -> next hop (at most kMaxSlots)
  std::map<IpAddress, std::string> steered;  // local pod -> the gateway node it is steered to
  std::map<IpAddress, std::string> returns;  // remote pod of a namespace hosted here -> its node
  std::set<std::pair<IpAddress, IpAddress>> peers;  // (node, pod) a tunnel accepts
  std::set<IpAddress> nodes;                        // nodes whose tunnel packets are accepted
};
// A local pod of a namespace whose address (of the pod's family) another
// node hosts is steered there when that node can be reached (an IPv4
// underlay address; on L2, an IPv6 one too for IPv6 pods); otherwise it
// stays fail-closed. Without this node's own entry nothing is steered.
// Through a tunnel, a node hosting addresses sends the replies of steered
// flows back to the pod's node (returns), so they arrive the way they left.
SteerView steerView(const DesiredState& d, const SteerConfig& c);

struct SteerPlan {
  std::optional<TunnelSpec> tunnel;  // create or replace
  std::vector<int> add_slots;
  std::vector<std::pair<int, Hop>> set_hops;
  std::vector<NftOp> install;  // steer adds/changes, peers and nodes added
  std::vector<NftOp> retire;   // steer, peer and node removals
  std::vector<std::pair<int, Hop>> clear_hops;
  // Pods whose gateway changed: their established flows follow (after the
  // new marks are in place). The old gateway has failed over, or handed
  // its flows over; either way it no longer serves them.
  std::vector<ConntrackRepin> repins;
  size_t size() const {
    return (tunnel ? 1 : 0) + add_slots.size() + set_hops.size() + install.size() + retire.size() +
           clear_hops.size();
  }
};
// Pure: a gateway keeps the slot whose next hop has its address; a new one
// takes the lowest free slot. Fails only when no slot is free.
Result<SteerPlan> planSteering(const SteerView& want, const ObservedRoutes& routes,
                               const ObservedNft& nft);

class SteerProvider final : public Provider {
 public:
  SteerProvider(NftSession& s, RouteKernel& routes, ConntrackKernel& ct, SteerConfig c)
      : s_(s), routes_(routes), ct_(ct), cfg_(std::move(c)) {}
  std::string_view name() const override { return "steering"; }
  Status observe() override;
  bool hasModel() const override { return model_.has_value(); }
  void dropModel() override { model_.reset(); }
  Status install(const DesiredState& desired, ExecStats& stats) override;
  Status retire(const DesiredState& desired, ExecStats& stats) override;
  const SteerConfig& config() const { return cfg_; }

 private:
  NftSession& s_;
  RouteKernel& routes_;
  ConntrackKernel& ct_;
  SteerConfig cfg_;
  std::optional<ObservedRoutes> model_;
  std::optional<SteerPlan> planned_;
};

}  // namespace nsegress::gateway
