#include "nsegress/gateway/failover.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "nsegress/gateway/ct_sync.h"
#include "nsegress/gateway/metrics.h"

namespace nsegress::gateway {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using ownership::Time;

Failover::Failover(asio::io_context& io, Clock& clock, FailoverConfig cfg, FenceKernel& fence,
                   Announcer& announcer, std::function<void()> changed, GatewayMetrics* metrics)
    : io_(io),
      clock_(clock),
      cfg_(std::move(cfg)),
      fence_(fence),
      announcer_(announcer),
      changed_(std::move(changed)),
      metrics_(metrics),
      member_(cfg_.node, cfg_.timing, clock.now()),
      sock_(io),
      timer_(io) {}

Status Failover::start() {
  boost::system::error_code ec;
  sock_.open(udp::v4(), ec);
  if (!ec) sock_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) sock_.bind(udp::endpoint(udp::v4(), cfg_.port), ec);
  if (ec)
    return makeError(ec.value(),
                     "failover: UDP port " + std::to_string(cfg_.port) + ": " + ec.message());
  receive();
  arm();
  return okStatus();
}

void Failover::arm() {
  timer_.expires_after(cfg_.tick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    step();
    arm();
  });
}

void Failover::receive() {
  sock_.async_receive_from(
      asio::buffer(rx_), rx_from_, [this](const boost::system::error_code& ec, size_t n) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
          auto m = ownership::decode(std::string_view(rx_.data(), n), cfg_.key);
          if (m) {
            handle(*m, rx_from_);
          } else {
            // Counted; logged at debug only (a flood
            // must not fill the log).
            stats_.refused++;
            if (metrics_) metrics_->failover_refused.Increment();
            spdlog::debug("failover: datagram from {} refused: {}", rx_from_.address().to_string(),
                          m.error().message);
          }
        }
        receive();
      });
}

void Failover::send(const ownership::Message& m, const udp::endpoint& to) {
  auto bytes = std::make_shared<std::string>(ownership::encode(m, cfg_.key));
  sock_.async_send_to(asio::buffer(*bytes), to,
                      [bytes](const boost::system::error_code&, size_t) {});
}

void Failover::handle(const ownership::Message& m, const udp::endpoint& from) {
  const Time now = clock_.now();
  if (auto* hb = std::get_if<ownership::Heartbeat>(&m)) {
    if (auto ack = member_.onHeartbeat(*hb, now)) send(*ack, from);
    return;
  } else if (auto* a = std::get_if<ownership::HeartbeatAck>(&m)) {
    if (auto it = hb_.find(a->from); it != hb_.end() && it->second.first == a->echo)
      it->second.second = true;
    member_.onAck(*a, now);
  } else if (auto* an = std::get_if<ownership::Announce>(&m)) {
    member_.onAnnounce(*an);
  } else if (auto* r = std::get_if<ownership::LeaseReply>(&m)) {
    if (r->node != cfg_.node) return;
    member_.onReply(*r, now);
  } else {
    return;  // requests are the store's
  }
  step();  // act on the news now (a takeover waits for no tick)
}

void Failover::step() {
  const Time now = clock_.now();
  if (uplink_) {
    const bool up = uplink_->up();
    if (up != member_.healthy()) {
      if (up)
        spdlog::warn("failover: uplink up again: this node may own and stand by again");
      else
        spdlog::error("failover: uplink down: using no egress address, claiming none");
      member_.setHealthy(up);
    }
  }
  // Takeovers granted since the last step: their synced flows go in before
  // the fence opens (the first reply from outside finds its entry, never a
  // reset from a table without it).
  const auto takeovers = member_.takeTakeovers();
  const auto handed = member_.takeHandovers();
  const auto live = member_.live(now);
  if (sync_ && !takeovers.empty()) {
    auto c = sync_->commit({takeovers.begin(), takeovers.end()});
    if (c.failed)
      spdlog::error(
          "failover: committed {} synced flows ({} replaced a local entry), {} failed: {}",
          c.created + c.replaced, c.replaced, c.failed, strerror(c.first_error));
    else
      spdlog::info("failover: committed {} synced flows ({} replaced a local entry)",
                   c.created + c.replaced, c.replaced);
  }
  if (applyFence(live, now)) {
    // What the kernel no longer uses may be reported released (handover).
    std::set<IpAddress> closed;
    for (const auto& ip : hostable_)
      if (!live.count(ip)) closed.insert(ip);
    member_.setFenced(closed);
  }
  auto out = member_.tick(now);
  if (out.request && cfg_.store.port() != 0) send(*out.request, cfg_.store);
  for (auto& [to, hb] : out.heartbeats)
    if (auto it = peers_.find(to); it != peers_.end()) {
      auto& [seq, acked] = hb_[to];
      if (seq != 0 && !acked) {
        stats_.heartbeats_lost++;
        if (metrics_) metrics_->failover_heartbeats_lost.Increment();
      }
      seq = hb.seq;
      acked = false;
      send(hb, it->second);
    }
  for (const auto& an : out.announces)
    for (const auto& [name, ep] : peers_)
      if (name != cfg_.node) send(an, ep);
  for (const auto& ip : takeovers) {
    stats_.takeovers++;
    if (metrics_) {
      metrics_->failover_takeovers.Increment();
      if (auto heard = member_.lastHeard(ip))
        metrics_->failover_duration.Observe(std::chrono::duration<double>(now - *heard).count());
    }
    spdlog::warn("failover: took over {} (epoch {})", ip.str(), member_.owners()[ip].epoch);
    announcer_.announce(ip);  // the fence is open for it now
  }
  for (const auto& ip : handed) {
    stats_.handovers++;
    if (metrics_) metrics_->failover_handovers.Increment();
    spdlog::info("failover: handing {} over to {} (planned; fence closed first)", ip.str(),
                 member_.owners()[ip].node);
  }
  // The data path follows every change of owner this node learns of.
  auto owners = member_.owners();
  bool moved = false;
  for (const auto& [ip, o] : owners) {
    auto it = owners_.find(ip);
    if (it == owners_.end() || it->second.node != o.node) moved = true;
  }
  if (moved || owners.size() != owners_.size()) {
    owners_ = std::move(owners);
    syncRoles();
    changed_();
  }
}

void Failover::syncRoles() {
  if (!sync_) return;
  // This node sends the flows of what it owns to each address's standby
  // (the designated one; after a takeover the controller names a new one)
  // and keeps what owners send it for the addresses it stands by for.
  std::map<IpAddress, std::string> owned;
  std::set<IpAddress> standby_for;
  for (const auto& [ip, role] : roles_) {
    auto it = owners_.find(ip);
    const std::string& owner = it != owners_.end() ? it->second.node : role.owner;
    if (owner == cfg_.node)
      owned[ip] = role.standby == cfg_.node ? "" : role.standby;
    else if (role.standby == cfg_.node)
      standby_for.insert(ip);
  }
  std::map<std::string, udp::endpoint> peers;
  for (const auto& [name, ep] : peers_)
    if (name != cfg_.node) peers[name] = udp::endpoint(ep.address(), sync_port_);
  sync_->setRoles(std::move(owned), std::move(standby_for), std::move(peers));
}

bool Failover::applyFence(const std::map<IpAddress, Time>& live, Time now) {
  // Rewritten when an address starts or stops being live, or when a proof
  // has moved its end by more than the margin (timeouts are refreshed).
  bool need = !applied_once_ || live.size() != applied_.size();
  for (const auto& [ip, until] : live) {
    auto it = applied_.find(ip);
    if (it == applied_.end() ||
        (until != it->second &&
         (until == ownership::kForever || it->second == ownership::kForever ||
          until - it->second > cfg_.timing.margin))) {
      need = true;
    }
  }
  for (const auto& [ip, until] : applied_)
    if (!live.count(ip)) {
      need = true;
      stats_.fenced++;
      if (metrics_) metrics_->failover_fenced.Increment();
      spdlog::warn("failover: {} fenced (no proof of ownership left)", ip.str());
    }
  if (!need) return true;
  std::map<IpAddress, std::optional<std::chrono::milliseconds>> timeouts;
  for (const auto& [ip, until] : live)
    timeouts[ip] =
        until == ownership::kForever
            ? std::nullopt
            : std::optional(std::chrono::duration_cast<std::chrono::milliseconds>(until - now));
  if (auto r = fence_.apply(hostable_, timeouts); !r) {
    stats_.fence_errors++;
    if (metrics_) metrics_->failover_fence_errors.Increment();
    spdlog::error("failover: fence: {}", r.error().message);
    return false;  // the kernel keeps the old timeouts: they only run out
  }
  applied_ = live;
  applied_once_ = true;
  if (metrics_) metrics_->failover_live.Set(static_cast<double>(live.size()));
  return true;
}

void Failover::setDesired(const DesiredState& d) {
  if (auto server = parseIpv4Port(d.lease_server)) {
    // Cluster mode: the leader's lease server as the API lists it.
    const udp::endpoint ep(asio::ip::make_address_v4(server->ip.str()), server->port);
    if (ep != cfg_.store) {
      spdlog::info("failover: lease server {}", d.lease_server);
      cfg_.store = ep;
    }
  }
  std::map<IpAddress, ownership::Member::Role> roles;
  std::set<IpAddress> hostable;
  for (const auto& r : d.addresses) {
    roles[r.ip] = {r.owner, r.standby, r.epoch};
    hostable.insert(r.ip);
  }
  roles_ = roles;
  member_.setRoles(std::move(roles));
  peers_.clear();
  for (const auto& n : d.nodes)
    if (n.ipv4) peers_[n.name] = udp::endpoint(asio::ip::make_address_v4(n.ipv4->str()), cfg_.port);
  if (hostable != hostable_) {
    hostable_ = std::move(hostable);
    applied_once_ = false;  // rewrite with the new set
  }
  owners_ = member_.owners();
  syncRoles();
  step();
}

DesiredState Failover::effective(const DesiredState& d) const {
  DesiredState out = d;
  const auto owners = member_.owners();
  std::map<std::string_view, NamespaceEgress*> by_name;  // one pass, not roles × namespaces
  for (auto& ns : out.namespaces) by_name[ns.name] = &ns;
  for (const auto& r : d.addresses) {
    auto ns = by_name.find(r.ns);
    if (ns == by_name.end()) continue;
    auto it = owners.find(r.ip);
    const std::string& owner = it != owners.end() ? it->second.node : r.owner;
    auto& egress = r.ip.isV4() ? ns->second->egress_v4 : ns->second->egress_v6;
    if (owner == cfg_.node)
      egress = r.ip;
    else if (egress == r.ip)
      egress.reset();
    (r.ip.isV4() ? ns->second->gateway_v4 : ns->second->gateway_v6) = owner;
  }
  return out;
}

}  // namespace nsegress::gateway
