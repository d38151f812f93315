#include "nsegress/netlink/address.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "nsegress/common/fd.h"

namespace nsegress::netlink {

namespace {
using NlSockPtr = Handle<nl_sock, nl_socket_free>;
using NlAddrPtr = Handle<nl_addr, nl_addr_put>;
using RtAddrPtr = Handle<rtnl_addr, rtnl_addr_put>;
using CachePtr = Handle<nl_cache, nl_cache_free>;

Error nlError(const std::string& what, int err) {
  return makeError(err < 0 ? -err : err, what + ": " + nl_geterror(err));
}

RtAddrPtr makeAddr(int ifindex, const IpAddress& a) {
  RtAddrPtr ra(rtnl_addr_alloc());
  NlAddrPtr local(nl_addr_build(a.isV4() ? AF_INET : AF_INET6, a.bytes(), a.size()));
  nl_addr_set_prefixlen(local.get(), a.isV4() ? 32 : 128);
  rtnl_addr_set_ifindex(ra.get(), ifindex);
  rtnl_addr_set_local(ra.get(), local.get());
  rtnl_addr_set_family(ra.get(), a.isV4() ? AF_INET : AF_INET6);
  rtnl_addr_set_prefixlen(ra.get(), a.isV4() ? 32 : 128);
  // No duplicate address detection delay for a moved IPv6 egress address and
  // no prefix route: the address is only a SNAT source.
  rtnl_addr_set_flags(ra.get(), IFA_F_NODAD | IFA_F_NOPREFIXROUTE);
  return ra;
}
}  // namespace

struct UplinkAddresses::Impl {
  NlSockPtr sock;
};

Result<std::unique_ptr<UplinkAddresses>> UplinkAddresses::open(const std::string& ifname) {
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return makeError(ENODEV, "uplink " + ifname + ": no such interface");
  auto impl = std::make_unique<Impl>();
  impl->sock.reset(nl_socket_alloc());
  if (!impl->sock) return makeError(ENOMEM, "libnl: cannot allocate socket");
  if (int err = nl_connect(impl->sock.get(), NETLINK_ROUTE); err < 0)
    return nlError("libnl: connect", err);
  return std::unique_ptr<UplinkAddresses>(new UplinkAddresses(ifname, ifindex, std::move(impl)));
}

bool UplinkAddresses::up() {
  // Read at every failover tick: one socket for the agent's life.
  if (flags_sock_.get() < 0) flags_sock_ = Fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (flags_sock_.get() < 0) return true;  // cannot tell: no change of health on a local error
  ifreq r{};
  std::strncpy(r.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
  if (ioctl(flags_sock_.get(), SIOCGIFFLAGS, &r) != 0) return false;  // gone
  return (r.ifr_flags & IFF_UP) && (r.ifr_flags & IFF_RUNNING);
}

UplinkAddresses::UplinkAddresses(std::string ifname, int ifindex, std::unique_ptr<Impl> impl)
    : ifname_(std::move(ifname)), ifindex_(ifindex), impl_(std::move(impl)) {}
UplinkAddresses::~UplinkAddresses() = default;

Result<std::set<IpAddress>> UplinkAddresses::list() {
  nl_cache* raw = nullptr;
  if (int err = rtnl_addr_alloc_cache(impl_->sock.get(), &raw); err < 0)
    return nlError("libnl: list addresses", err);
  CachePtr cache(raw);
  std::set<IpAddress> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* ra = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(ra) != ifindex_) continue;
    nl_addr* local = rtnl_addr_get_local(ra);
    if (!local) continue;
    const int fam = nl_addr_get_family(local);
    const auto len = nl_addr_get_len(local);
    if (fam == AF_INET && len == 4)
      out.insert(
          IpAddress::fromBytes(Family::V4, static_cast<uint8_t*>(nl_addr_get_binary_addr(local))));
    else if (fam == AF_INET6 && len == 16)
      out.insert(
          IpAddress::fromBytes(Family::V6, static_cast<uint8_t*>(nl_addr_get_binary_addr(local))));
  }
  return out;
}

Status UplinkAddresses::add(const IpAddress& a) {
  auto ra = makeAddr(ifindex_, a);
  int err = rtnl_addr_add(impl_->sock.get(), ra.get(), 0);
  if (err < 0 && err != -NLE_EXIST) return nlError("add " + a.str() + " on " + ifname_, err);
  return okStatus();
}

Status UplinkAddresses::remove(const IpAddress& a) {
  auto ra = makeAddr(ifindex_, a);
  int err = rtnl_addr_delete(impl_->sock.get(), ra.get(), 0);
  if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV)
    return nlError("remove " + a.str() + " from " + ifname_, err);
  return okStatus();
}

// ---- gratuitous ARP -----------------------------------------------------------

std::vector<uint8_t> buildGratuitousArp(const uint8_t mac[6], const IpAddress& ip) {
  std::vector<uint8_t> f(28);
  auto put16 = [&](size_t off, uint16_t v) {
    f[off] = static_cast<uint8_t>(v >> 8);
    f[off + 1] = static_cast<uint8_t>(v & 0xff);
  };
  put16(0, 1);       // hardware type: Ethernet
  put16(2, 0x0800);  // protocol type: IPv4
  f[4] = 6;
  f[5] = 4;
  put16(6, 1);  // opcode: request (announcement)
  std::memcpy(&f[8], mac, 6);
  std::memcpy(&f[14], ip.bytes(), 4);
  // target hardware address stays zero
  std::memcpy(&f[24], ip.bytes(), 4);
  return f;
}

void GarpSchedule::add(const IpAddress& a, Clock::TimePoint now) {
  if (!a.isV4() || count_ <= 0) return;  // IPv6: the kernel sends unsolicited NAs itself
  series_[a] = Series{now, count_};
}

std::vector<IpAddress> GarpSchedule::due(Clock::TimePoint now) {
  std::vector<IpAddress> out;
  for (auto it = series_.begin(); it != series_.end();) {
    if (it->second.at > now) {
      ++it;
      continue;
    }
    out.push_back(it->first);
    if (--it->second.remaining > 0) {
      it->second.at += interval_;
      ++it;
    } else {
      it = series_.erase(it);
    }
  }
  return out;
}

std::optional<Clock::TimePoint> GarpSchedule::next() const {
  std::optional<Clock::TimePoint> t;
  for (const auto& [ip, s] : series_)
    if (!t || s.at < *t) t = s.at;
  return t;
}

Result<std::unique_ptr<GarpAnnouncer>> GarpAnnouncer::open(const std::string& ifname, int count,
                                                           std::chrono::milliseconds interval,
                                                           Clock& clock) {
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return makeError(ENODEV, "garp: " + ifname + ": no such interface");
  Fd fd(socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
  if (!fd) return makeError(errno, std::string("garp: packet socket: ") + strerror(errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd.get(), SIOCGIFHWADDR, &ifr) < 0)
    return makeError(errno, "garp: " + ifname + ": no hardware address");
  uint8_t mac[6];
  std::memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
  return std::unique_ptr<GarpAnnouncer>(
      new GarpAnnouncer(std::move(fd), ifindex, mac, count, interval, clock));
}

GarpAnnouncer::GarpAnnouncer(Fd fd, int ifindex, const uint8_t mac[6], int count,
                             std::chrono::milliseconds interval, Clock& clock)
    : fd_(std::move(fd)), ifindex_(ifindex), clock_(clock), schedule_(count, interval) {
  std::memcpy(mac_, mac, 6);
  worker_ = std::thread([this] { run(); });
}

GarpAnnouncer::~GarpAnnouncer() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void GarpAnnouncer::announce(const IpAddress& a) {
  {
    std::lock_guard l(mu_);
    schedule_.add(a, clock_.now());
  }
  cv_.notify_all();
}

uint64_t GarpAnnouncer::sent() const {
  std::lock_guard l(mu_);
  return sent_;
}
uint64_t GarpAnnouncer::failed() const {
  std::lock_guard l(mu_);
  return failed_;
}

bool GarpAnnouncer::sendOne(const IpAddress& a) {
  auto frame = buildGratuitousArp(mac_, a);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  return sendto(fd_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                sizeof to) == static_cast<ssize_t>(frame.size());
}

void GarpAnnouncer::run() {
  std::unique_lock l(mu_);
  while (!stop_) {
    auto next = schedule_.next();
    if (!next) {
      cv_.wait(l);
      continue;
    }
    const auto wait = *next - clock_.now();
    if (wait.count() > 0) {
      // Bounded, so a clock other than the system's is re-read regularly.
      cv_.wait_for(l, std::min<Clock::Duration>(wait, std::chrono::milliseconds(100)));
      continue;
    }
    const auto due = schedule_.due(clock_.now());
    l.unlock();
    std::vector<bool> ok;
    for (const auto& a : due) ok.push_back(sendOne(a));
    l.lock();
    for (bool b : ok) (b ? sent_ : failed_)++;
  }
}

}  // namespace nsegress::netlink
