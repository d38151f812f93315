// Failover on a node: the ownership protocol (common/ownership.h) carried
// over UDP (common/peer_wire.h), the kernel fence (ports/fence.h) kept in
// step with the node's proofs, gratuitous ARP on a takeover, and the desired
// state overlaid with what this node knows of each address's owner (a
// takeover it was granted, or one announced with a higher epoch), so the
// data path follows a move before the controller has written it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "nsegress/common/clock.h"
#include "nsegress/common/desired_state.h"
#include "nsegress/common/ownership.h"
#include "nsegress/common/peer_wire.h"
#include "nsegress/gateway/ports/address.h"
#include "nsegress/gateway/ports/fence.h"
#include "nsegress/gateway/ports/link.h"

namespace nsegress::gateway {

struct FailoverConfig {
  std::string node;
  std::string key;                       // shared by every node and the store
  uint16_t port = 4794;                  // peers' UDP port (the same on every node)
  boost::asio::ip::udp::endpoint store;  // the lease server (port 0: learnt from the state)
  ownership::Timing timing;
  std::chrono::milliseconds tick{10};
};

struct FailoverStats {
  uint64_t takeovers = 0;  // addresses this node took over
  uint64_t fenced = 0;     // addresses this node stopped using (lost its proof)
  uint64_t refused = 0;    // datagrams refused (unauthenticated, malformed)
  uint64_t fence_errors = 0;
  uint64_t heartbeats_lost = 0;
  uint64_t handovers = 0;  // addresses this node handed over (planned)
};

class Failover {
 public:
  Failover(boost::asio::io_context& io, Clock& clock, FailoverConfig cfg, FenceKernel& fence,
           Announcer& announcer, std::function<void()> changed,
           class GatewayMetrics* metrics = nullptr);
  Status start();
  // Each desired state the agent loads (roles, peers, hostable addresses).
  void setDesired(const DesiredState& d);
  // `d` with every address hosted where this node knows its owner is.
  DesiredState effective(const DesiredState& d) const;
  const FailoverStats& stats() const { return stats_; }
  // Conntrack sync (optional): committed before the fence opens for a taken
  // over address; told every change of roles.
  // The uplink's state, read at every tick: down, this node uses and claims
  // nothing (its standby takes over after the promise).
  void setUplink(LinkState* uplink) { uplink_ = uplink; }
  void setSync(class CtSync* sync, uint16_t port) {
    sync_ = sync;
    sync_port_ = port;
  }

 private:
  void receive();
  void handle(const ownership::Message& m, const boost::asio::ip::udp::endpoint& from);
  void step();
  void send(const ownership::Message& m, const boost::asio::ip::udp::endpoint& to);
  bool applyFence(const std::map<IpAddress, ownership::Time>& live, ownership::Time now);
  void arm();

  boost::asio::io_context& io_;
  Clock& clock_;
  FailoverConfig cfg_;
  FenceKernel& fence_;
  Announcer& announcer_;
  std::function<void()> changed_;
  GatewayMetrics* metrics_;
  ownership::Member member_;
  boost::asio::ip::udp::socket sock_;
  boost::asio::steady_timer timer_;
  std::array<char, ownership::kMaxDatagram + 1> rx_{};
  boost::asio::ip::udp::endpoint rx_from_;
  std::map<std::string, boost::asio::ip::udp::endpoint> peers_;
  std::set<IpAddress> hostable_;
  std::map<IpAddress, ownership::Time> applied_;  // live set as last written (our clock)
  bool applied_once_ = false;
  std::map<IpAddress, ownership::Member::Owner> owners_;  // as last acted on
  FailoverStats stats_;
  class CtSync* sync_ = nullptr;
  LinkState* uplink_ = nullptr;
  uint16_t sync_port_ = 0;
  std::map<IpAddress, ownership::Member::Role> roles_;
  std::map<std::string, std::pair<uint64_t, bool>> hb_;  // peer → (last heartbeat seq, acked)
  void syncRoles();
};

}  // namespace nsegress::gateway
