#include "nsegress/netlink/routes.h"

#include <net/if.h>
// net/if.h first: linux/ headers then skip their copy of the interface flags.
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/ip.h>
#include <linux/neighbour.h>
#include <linux/nexthop.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/rule.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "nsegress/common/fd.h"

namespace nsegress::netlink {

using gateway::Hop;
using gateway::kMaxSlots;
using gateway::kSteerMarkMask;
using gateway::markOfSlot;
using gateway::ObservedRoutes;
using gateway::TunnelSpec;

namespace {
using MnlPtr = Handle<mnl_socket, mnl_socket_close>;
using NlSockPtr = Handle<nl_sock, nl_socket_free>;
using NlAddrPtr = Handle<nl_addr, nl_addr_put>;
using LinkPtr = Handle<rtnl_link, rtnl_link_put>;
using RulePtr = Handle<rtnl_rule, rtnl_rule_put>;
using CachePtr = Handle<nl_cache, nl_cache_free>;
using RtAddrPtr = Handle<rtnl_addr, rtnl_addr_put>;

Error nlError(const std::string& what, int err) {
  return makeError(err < 0 ? -err : err, what + ": " + nl_geterror(err));
}

std::string ifName(int index) {
  char buf[IF_NAMESIZE] = {};
  return if_indextoname(static_cast<unsigned>(index), buf) ? buf : "";
}

std::string macStr(const uint8_t* m) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

bool macBytes(const std::string& s, uint8_t out[6]) {
  unsigned m[6];
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
    return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(m[i]);
  return true;
}

int family(const IpAddress& a) {
  return a.isV4() ? AF_INET : AF_INET6;
}

uint32_t tableOf(int slot) {
  return kTableBase + static_cast<uint32_t>(slot);
}

}  // namespace

struct SteerRoutes::Impl {
  MnlPtr mnl;
  uint32_t portid = 0;
  uint32_t seq = static_cast<uint32_t>(time(nullptr));
  NlSockPtr nl;
  std::vector<char> rx = std::vector<char>(1 << 20);

  // One request answered by an ACK; `ok` errnos count as success.
  Status request(nlmsghdr* nlh, const std::string& what, std::initializer_list<int> ok = {}) {
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = ++seq;
    if (mnl_socket_sendto(mnl.get(), nlh, nlh->nlmsg_len) < 0)
      return makeError(errno, what + ": " + strerror(errno));
    for (;;) {
      ssize_t n = mnl_socket_recvfrom(mnl.get(), rx.data(), rx.size());
      if (n < 0) return makeError(errno, what + ": " + strerror(errno));
      int r =
          mnl_cb_run(rx.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid, nullptr, nullptr);
      if (r == MNL_CB_STOP) return okStatus();
      if (r < 0) {
        const int e = errno;
        for (int o : ok)
          if (e == o) return okStatus();
        return makeError(e, what + ": " + strerror(e));
      }
    }
  }

  // A dump: `each` sees every message of the answer.
  Status dump(nlmsghdr* nlh, const std::function<void(const nlmsghdr*)>& each,
              const std::string& what) {
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = ++seq;
    if (mnl_socket_sendto(mnl.get(), nlh, nlh->nlmsg_len) < 0)
      return makeError(errno, what + ": " + strerror(errno));
    for (;;) {
      ssize_t n = mnl_socket_recvfrom(mnl.get(), rx.data(), rx.size());
      if (n < 0) return makeError(errno, what + ": " + strerror(errno));
      int r = mnl_cb_run(
          rx.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid,
          [](const nlmsghdr* m, void* data) -> int {
            (*static_cast<const std::function<void(const nlmsghdr*)>*>(data))(m);
            return MNL_CB_OK;
          },
          const_cast<std::function<void(const nlmsghdr*)>*>(&each));
      if (r == MNL_CB_STOP) return okStatus();
      if (r < 0) return makeError(errno, what + ": " + strerror(errno));
    }
  }
};

namespace {

// Attributes of a message after its fixed header of `hdr` bytes.
std::map<uint16_t, const nlattr*> attrs(const nlmsghdr* nlh, size_t hdr) {
  std::map<uint16_t, const nlattr*> out;
  const auto* a = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, hdr));
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(a, static_cast<int>(tail - reinterpret_cast<const char*>(a)))) {
    out[mnl_attr_get_type(a)] = a;
    a = mnl_attr_next(a);
  }
  return out;
}

std::optional<IpAddress> ipAttr(const nlattr* a) {
  if (!a) return std::nullopt;
  const auto len = mnl_attr_get_payload_len(a);
  const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(a));
  if (len == 4) return IpAddress::fromBytes(Family::V4, p);
  if (len == 16) return IpAddress::fromBytes(Family::V6, p);
  return std::nullopt;
}

struct Buf {
  alignas(nlmsghdr) char data[8192] = {};
};

nlmsghdr* header(Buf& b, uint16_t type, uint16_t flags) {
  auto* nlh = mnl_nlmsg_put_header(b.data);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  return nlh;
}

nlmsghdr* nexthopMsg(Buf& b, uint16_t type, uint16_t flags, int fam, uint32_t id) {
  auto* nlh = header(b, type, flags);
  auto* nhm = static_cast<nhmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nhmsg)));
  nhm->nh_family = static_cast<uint8_t>(fam);
  mnl_attr_put_u32(nlh, NHA_ID, id);
  return nlh;
}

nlmsghdr* routeMsg(Buf& b, uint16_t type, uint16_t flags, int fam, uint32_t table, uint8_t rtype) {
  auto* nlh = header(b, type, flags);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = static_cast<uint8_t>(fam);
  rtm->rtm_table = RT_TABLE_UNSPEC;
  rtm->rtm_protocol = RTPROT_STATIC;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = rtype;
  mnl_attr_put_u32(nlh, RTA_TABLE, table);
  return nlh;
}

nlmsghdr* neighMsg(Buf& b, uint16_t type, uint16_t flags, int fam, int ifindex) {
  auto* nlh = header(b, type, flags);
  auto* ndm = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
  ndm->ndm_family = static_cast<uint8_t>(fam);
  ndm->ndm_ifindex = ifindex;
  ndm->ndm_state = NUD_PERMANENT;
  if (fam == AF_BRIDGE) ndm->ndm_flags = NTF_SELF;
  return nlh;
}

RulePtr slotRule(int fam, int slot) {
  RulePtr r(rtnl_rule_alloc());
  rtnl_rule_set_family(r.get(), fam);
  rtnl_rule_set_prio(r.get(), kRulePriority);
  rtnl_rule_set_mark(r.get(), markOfSlot(slot));
  rtnl_rule_set_mask(r.get(), kSteerMarkMask);
  rtnl_rule_set_table(r.get(), tableOf(slot));
  rtnl_rule_set_action(r.get(), FR_ACT_TO_TBL);
  return r;
}

}  // namespace

Result<std::unique_ptr<SteerRoutes>> SteerRoutes::open(std::string tunnel) {
  auto impl = std::make_unique<Impl>();
  impl->mnl.reset(mnl_socket_open(NETLINK_ROUTE));
  if (!impl->mnl) return makeError(errno, std::string("rtnetlink: socket: ") + strerror(errno));
  if (mnl_socket_bind(impl->mnl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    return makeError(errno, std::string("rtnetlink: bind: ") + strerror(errno));
  impl->portid = mnl_socket_get_portid(impl->mnl.get());
  int on = 1;
  (void)setsockopt(mnl_socket_get_fd(impl->mnl.get()), SOL_NETLINK, NETLINK_EXT_ACK, &on,
                   sizeof on);
  impl->nl.reset(nl_socket_alloc());
  if (!impl->nl) return makeError(ENOMEM, "libnl: cannot allocate socket");
  if (int err = nl_connect(impl->nl.get(), NETLINK_ROUTE); err < 0)
    return nlError("libnl: connect", err);
  return std::unique_ptr<SteerRoutes>(new SteerRoutes(std::move(tunnel), std::move(impl)));
}

SteerRoutes::SteerRoutes(std::string tunnel, std::unique_ptr<Impl> impl)
    : tunnel_(std::move(tunnel)), impl_(std::move(impl)) {}
SteerRoutes::~SteerRoutes() = default;

int deviceMtu(const std::string& name) {
  std::ifstream in("/sys/class/net/" + name + "/mtu");
  int mtu = 0;
  in >> mtu;
  return mtu;
}

namespace {}  // namespace

bool SteerRoutes::hasAddress(int ifindex, const IpAddress& a) {
  nl_cache* raw = nullptr;
  if (rtnl_addr_alloc_cache(impl_->nl.get(), &raw) < 0) return false;
  CachePtr cache(raw);
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* ra = reinterpret_cast<rtnl_addr*>(o);
    nl_addr* local = rtnl_addr_get_local(ra);
    if (rtnl_addr_get_ifindex(ra) == ifindex && local && nl_addr_get_len(local) == a.size() &&
        std::memcmp(nl_addr_get_binary_addr(local), a.bytes(), a.size()) == 0)
      return true;
  }
  return false;
}

Result<ObservedRoutes> SteerRoutes::observe() {
  ObservedRoutes obs;
  Impl& im = *impl_;
  int tunnel_index = 0;

  // The tunnel device.
  if (!tunnel_.empty()) {
    rtnl_link* raw = nullptr;
    int err = rtnl_link_get_kernel(im.nl.get(), 0, tunnel_.c_str(), &raw);
    if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV)
      return nlError("libnl: get link " + tunnel_, err);
    if (raw) {
      LinkPtr link(raw);
      tunnel_index = rtnl_link_get_ifindex(link.get());
      TunnelSpec t;
      t.name = tunnel_;
      if (rtnl_link_is_vxlan(link.get())) {
        uint32_t id = 0, port = 0, dev = 0;
        rtnl_link_vxlan_get_id(link.get(), &id);
        rtnl_link_vxlan_get_port(link.get(), &port);
        rtnl_link_vxlan_get_link(link.get(), &dev);
        t.vni = id;
        t.port = static_cast<uint16_t>(port);
        t.link = ifName(static_cast<int>(dev));
        nl_addr* local = nullptr;
        if (rtnl_link_vxlan_get_local(link.get(), &local) == 0 && local) {
          if (nl_addr_get_len(local) == 4)
            t.local = IpAddress::fromBytes(Family::V4,
                                           static_cast<uint8_t*>(nl_addr_get_binary_addr(local)));
          nl_addr_put(local);
        }
        t.mtu = static_cast<int>(rtnl_link_get_mtu(link.get()));
        if (nl_addr* a = rtnl_link_get_addr(link.get()); a && nl_addr_get_len(a) == 6)
          t.mac = macStr(static_cast<uint8_t*>(nl_addr_get_binary_addr(a)));
        // Anything not as built (down, learning, rp_filter) reads as a
        // different device, so the next install rebuilds it.
        const bool up = rtnl_link_get_flags(link.get()) & IFF_UP;
        uint32_t rp = 0;
        rtnl_link_inet_get_conf(link.get(), IPV4_DEVCONF_RP_FILTER, &rp);
        if (!up || rtnl_link_vxlan_get_learning(link.get()) != 0 || rp != 2 ||
            !hasAddress(tunnel_index, t.local) ||
            !hasAddress(tunnel_index, gateway::tunnelLinkLocal(t.mac)))
          t.mtu = -1;
      }
      obs.tunnel = t;
    }
  }

  // Next hops in our ranges.
  struct Nh {
    int fam = 0;
    std::optional<IpAddress> gw;
    int oif = 0;
  };
  std::map<uint32_t, Nh> nhs;
  {
    Buf b;
    auto* nlh = header(b, RTM_GETNEXTHOP, 0);
    static_cast<nhmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nhmsg)))->nh_family = AF_UNSPEC;
    auto st = im.dump(
        nlh,
        [&](const nlmsghdr* m) {
          auto a = attrs(m, sizeof(nhmsg));
          if (!a.count(NHA_ID)) return;
          const uint32_t id = mnl_attr_get_u32(a[NHA_ID]);
          const bool ours = (id > kNexthopBase4 && id <= kNexthopBase4 + kMaxSlots) ||
                            (id > kNexthopBase6 && id <= kNexthopBase6 + kMaxSlots);
          if (!ours) return;
          Nh nh;
          nh.fam = static_cast<const nhmsg*>(mnl_nlmsg_get_payload(m))->nh_family;
          nh.gw = ipAttr(a.count(NHA_GATEWAY) ? a[NHA_GATEWAY] : nullptr);
          nh.oif = a.count(NHA_OIF) ? static_cast<int>(mnl_attr_get_u32(a[NHA_OIF])) : 0;
          nhs[id] = nh;
        },
        "list next hops");
    if (!st) return st.error();
  }

  // Routes in our tables: which next hops are routed, which blackholes exist.
  std::set<std::pair<int, uint32_t>> routed;      // (family, table) with a route via a next hop
  std::set<std::pair<int, uint32_t>> blackholed;  // (family, table)
  for (int fam : {AF_INET, AF_INET6}) {
    Buf b;
    auto* nlh = header(b, RTM_GETROUTE, 0);
    static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)))->rtm_family =
        static_cast<uint8_t>(fam);
    auto st = im.dump(
        nlh,
        [&](const nlmsghdr* m) {
          const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(m));
          auto a = attrs(m, sizeof(rtmsg));
          const uint32_t table =
              a.count(RTA_TABLE) ? mnl_attr_get_u32(a[RTA_TABLE]) : rtm->rtm_table;
          if (table <= kTableBase || table > kTableBase + kMaxSlots || rtm->rtm_dst_len != 0)
            return;
          if (rtm->rtm_type == RTN_BLACKHOLE) blackholed.emplace(fam, table);
          if (rtm->rtm_type == RTN_UNICAST && a.count(RTA_NH_ID)) routed.emplace(fam, table);
        },
        "list routes");
    if (!st) return st.error();
  }

  // Neighbour and forwarding entries on the tunnel.
  std::map<IpAddress, std::string> neigh;  // address -> MAC
  std::map<std::string, IpAddress> fdb;    // MAC -> remote
  if (tunnel_index)
    for (int fam : {AF_INET, AF_INET6, AF_BRIDGE}) {
      Buf b;
      auto* nlh = header(b, RTM_GETNEIGH, 0);
      static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)))->ndm_family =
          static_cast<uint8_t>(fam);
      auto st = im.dump(
          nlh,
          [&](const nlmsghdr* m) {
            const auto* ndm = static_cast<const ndmsg*>(mnl_nlmsg_get_payload(m));
            if (ndm->ndm_ifindex != tunnel_index || !(ndm->ndm_state & NUD_PERMANENT)) return;
            auto a = attrs(m, sizeof(ndmsg));
            if (!a.count(NDA_LLADDR) || mnl_attr_get_payload_len(a[NDA_LLADDR]) != 6) return;
            const std::string mac =
                macStr(static_cast<const uint8_t*>(mnl_attr_get_payload(a[NDA_LLADDR])));
            auto dst = ipAttr(a.count(NDA_DST) ? a[NDA_DST] : nullptr);
            if (!dst) return;
            if (fam == AF_BRIDGE)
              fdb[mac] = *dst;
            else
              neigh[*dst] = mac;
          },
          "list neighbours");
      if (!st) return st.error();
    }

  // Rules.
  std::set<std::pair<int, int>> rules;  // (family, slot)
  {
    nl_cache* raw = nullptr;
    if (int err = rtnl_rule_alloc_cache(im.nl.get(), AF_UNSPEC, &raw); err < 0)
      return nlError("libnl: list rules", err);
    CachePtr cache(raw);
    for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
      auto* r = reinterpret_cast<rtnl_rule*>(o);
      const uint32_t table = rtnl_rule_get_table(r);
      if (rtnl_rule_get_prio(r) != kRulePriority || table <= kTableBase ||
          table > kTableBase + kMaxSlots)
        continue;
      const int slot = static_cast<int>(table - kTableBase);
      if (rtnl_rule_get_mark(r) == markOfSlot(slot) && rtnl_rule_get_mask(r) == kSteerMarkMask &&
          rtnl_rule_get_action(r) == FR_ACT_TO_TBL)
        rules.emplace(rtnl_rule_get_family(r), slot);
    }
  }

  for (int s = 1; s <= kMaxSlots; ++s) {
    const uint32_t t = tableOf(s);
    if (rules.count({AF_INET, s}) && rules.count({AF_INET6, s}) && blackholed.count({AF_INET, t}) &&
        blackholed.count({AF_INET6, t}))
      obs.slots.insert(s);
    auto n4 = nhs.find(kNexthopBase4 + static_cast<uint32_t>(s));
    if (n4 == nhs.end() || !n4->second.gw) continue;
    Hop h;
    h.via4 = *n4->second.gw;
    h.dev = ifName(n4->second.oif);
    auto n6 = nhs.find(kNexthopBase6 + static_cast<uint32_t>(s));
    if (n6 != nhs.end()) h.via6 = n6->second.gw;
    // Anything missing reads as a different hop (the next install repairs
    // it in place): a route, a neighbour or forwarding entry of the tunnel.
    bool whole = routed.count({AF_INET, t}) && (!h.via6 || routed.count({AF_INET6, t}));
    if (tunnel_index && n4->second.oif == tunnel_index) {
      auto nb = neigh.find(h.via4);
      if (nb != neigh.end()) {
        h.mac = nb->second;
        auto f = fdb.find(h.mac);
        whole = whole && f != fdb.end() && f->second == h.via4;
        if (h.via6) {
          auto nb6 = neigh.find(*h.via6);
          whole = whole && nb6 != neigh.end() && nb6->second == h.mac;
        }
      } else {
        whole = false;
      }
    }
    if (!whole) h.dev += "?";
    obs.hops[s] = h;
  }
  return obs;
}

Status SteerRoutes::ensureTunnel(const TunnelSpec& t) {
  Impl& im = *impl_;
  if (auto r = deleteTunnel(t.name); !r) return r;
  const int link = static_cast<int>(if_nametoindex(t.link.c_str()));
  if (!link) return makeError(ENODEV, "tunnel " + t.name + ": no underlay device " + t.link);
  LinkPtr l(rtnl_link_vxlan_alloc());
  rtnl_link_set_name(l.get(), t.name.c_str());
  rtnl_link_vxlan_set_id(l.get(), t.vni);
  rtnl_link_vxlan_set_port(l.get(), t.port);
  rtnl_link_vxlan_set_learning(l.get(), 0);
  rtnl_link_vxlan_set_link(l.get(), static_cast<uint32_t>(link));
  NlAddrPtr local(nl_addr_build(AF_INET, t.local.bytes(), 4));
  rtnl_link_vxlan_set_local(l.get(), local.get());
  rtnl_link_set_mtu(l.get(), static_cast<unsigned>(t.mtu));
  uint8_t mac[6];
  if (!macBytes(t.mac, mac)) return makeError(EINVAL, "tunnel " + t.name + ": bad MAC " + t.mac);
  NlAddrPtr lladdr(nl_addr_build(AF_LLC, mac, 6));
  rtnl_link_set_addr(l.get(), lladdr.get());
  if (int err = rtnl_link_add(im.nl.get(), l.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
    return nlError("libnl: create tunnel " + t.name, err);
  LinkPtr cur;
  {
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(im.nl.get(), 0, t.name.c_str(), &raw); err < 0)
      return nlError("libnl: get link " + t.name, err);
    cur.reset(raw);
  }
  // Configured through netlink, not /proc/sys (read-only in a container):
  // steered packets arrive here with their pods' addresses, which are routed
  // back through the CNI, not the tunnel, so strict reverse-path filtering
  // would drop them — loose on this device only (the effective value is the
  // maximum of `all` and the device's); the nft input rules bind each inner
  // source to the node that sent it instead. IPv6: no automatic link-local
  // address (it would wait for duplicate address detection).
  {
    LinkPtr conf(rtnl_link_alloc());
    rtnl_link_inet_set_conf(conf.get(), IPV4_DEVCONF_RP_FILTER, 2);
    rtnl_link_inet6_set_addr_gen_mode(conf.get(), IN6_ADDR_GEN_MODE_NONE);
    if (int err = rtnl_link_change(im.nl.get(), cur.get(), conf.get(), 0); err < 0)
      return nlError("libnl: configure " + t.name, err);
  }
  // Reverse-path filtering drops everything arriving on a device without an
  // IPv4 address, loose or not: the tunnel carries the node's own address (a
  // /32, no prefix route), as Flannel's device does; and the link-local
  // address derived from its MAC (unique to the node), without DAD.
  const int index = rtnl_link_get_ifindex(cur.get());
  const IpAddress ll = gateway::tunnelLinkLocal(t.mac);
  for (const auto& [a, prefix, flags] :
       {std::tuple{t.local, 32, IFA_F_NOPREFIXROUTE}, std::tuple{ll, 64, IFA_F_NODAD}}) {
    RtAddrPtr ra(rtnl_addr_alloc());
    NlAddrPtr addr(nl_addr_build(family(a), a.bytes(), a.size()));
    nl_addr_set_prefixlen(addr.get(), prefix);
    rtnl_addr_set_ifindex(ra.get(), index);
    rtnl_addr_set_local(ra.get(), addr.get());
    rtnl_addr_set_family(ra.get(), family(a));
    rtnl_addr_set_prefixlen(ra.get(), prefix);
    rtnl_addr_set_flags(ra.get(), flags);
    if (int err = rtnl_addr_add(im.nl.get(), ra.get(), 0); err < 0 && err != -NLE_EXIST)
      return nlError("libnl: address " + a.str() + " of " + t.name, err);
  }
  LinkPtr up(rtnl_link_alloc());
  rtnl_link_set_flags(up.get(), IFF_UP);
  if (int err = rtnl_link_change(im.nl.get(), cur.get(), up.get(), 0); err < 0)
    return nlError("libnl: set " + t.name + " up", err);
  return okStatus();
}

Status SteerRoutes::deleteTunnel(const std::string& name) {
  if (!if_nametoindex(name.c_str())) return okStatus();
  LinkPtr l(rtnl_link_alloc());
  rtnl_link_set_name(l.get(), name.c_str());
  int err = rtnl_link_delete(impl_->nl.get(), l.get());
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV)
    return nlError("libnl: delete " + name, err);
  return okStatus();
}

Status SteerRoutes::addSlot(int slot) {
  Impl& im = *impl_;
  for (int fam : {AF_INET, AF_INET6}) {
    auto r = slotRule(fam, slot);
    int err = rtnl_rule_add(im.nl.get(), r.get(), NLM_F_CREATE | NLM_F_EXCL);
    if (err < 0 && err != -NLE_EXIST)
      return nlError("libnl: add rule of slot " + std::to_string(slot), err);
    Buf b;
    auto* nlh =
        routeMsg(b, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, fam, tableOf(slot), RTN_BLACKHOLE);
    mnl_attr_put_u32(nlh, RTA_PRIORITY, kBlackholeMetric);
    if (auto st = im.request(nlh, "add blackhole of slot " + std::to_string(slot), {EEXIST}); !st)
      return st;
  }
  return okStatus();
}

Status SteerRoutes::setHop(int slot, const Hop& hop) {
  Impl& im = *impl_;
  const int oif = static_cast<int>(if_nametoindex(hop.dev.c_str()));
  if (!oif) return makeError(ENODEV, "slot " + std::to_string(slot) + ": no device " + hop.dev);
  const std::string what = "slot " + std::to_string(slot) + " (" + hop.via4.str() + ")";
  const bool tunnel = !hop.mac.empty();
  if (tunnel) {
    // The gateway's tunnel MAC for its addresses, and where to send it.
    uint8_t mac[6];
    if (!macBytes(hop.mac, mac)) return makeError(EINVAL, what + ": bad MAC " + hop.mac);
    std::vector<IpAddress> vias = {hop.via4};
    if (hop.via6) vias.push_back(*hop.via6);
    for (const auto& via : vias) {
      Buf b;
      auto* nlh = neighMsg(b, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, family(via), oif);
      mnl_attr_put(nlh, NDA_DST, via.size(), via.bytes());
      mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
      if (auto st = im.request(nlh, what + ": neighbour " + via.str()); !st) return st;
    }
    Buf b;
    auto* nlh = neighMsg(b, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_BRIDGE, oif);
    mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
    mnl_attr_put(nlh, NDA_DST, 4, hop.via4.bytes());
    if (auto st = im.request(nlh, what + ": tunnel forwarding entry"); !st) return st;
  }
  struct One {
    int fam;
    uint32_t id;
    std::optional<IpAddress> via;
  };
  for (const One& o : {One{AF_INET, kNexthopBase4 + static_cast<uint32_t>(slot), hop.via4},
                       One{AF_INET6, kNexthopBase6 + static_cast<uint32_t>(slot), hop.via6}}) {
    if (!o.via) {
      Buf b;
      auto* nlh = nexthopMsg(b, RTM_DELNEXTHOP, 0, AF_UNSPEC, o.id);
      if (auto st = im.request(nlh, what + ": delete IPv6 next hop", {ENOENT}); !st) return st;
      continue;
    }
    {
      Buf b;
      auto* nlh = nexthopMsg(b, RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_REPLACE, o.fam, o.id);
      mnl_attr_put_u32(nlh, NHA_OIF, static_cast<uint32_t>(oif));
      mnl_attr_put(nlh, NHA_GATEWAY, o.via->size(), o.via->bytes());
      // The tunnel has no addresses: its IPv4 next hop is on-link by fiat.
      if (tunnel && o.fam == AF_INET)
        static_cast<nhmsg*>(mnl_nlmsg_get_payload(nlh))->nh_flags = RTNH_F_ONLINK;
      if (auto st = im.request(nlh, what + ": next hop via " + o.via->str()); !st) return st;
    }
    Buf b;
    auto* nlh =
        routeMsg(b, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, o.fam, tableOf(slot), RTN_UNICAST);
    mnl_attr_put_u32(nlh, RTA_NH_ID, o.id);
    if (auto st = im.request(nlh, what + ": default route"); !st) return st;
  }
  return okStatus();
}

Status SteerRoutes::clearHop(int slot, const Hop& hop) {
  Impl& im = *impl_;
  const std::string what = "slot " + std::to_string(slot);
  for (uint32_t id :
       {kNexthopBase4 + static_cast<uint32_t>(slot), kNexthopBase6 + static_cast<uint32_t>(slot)}) {
    Buf b;
    auto* nlh = nexthopMsg(b, RTM_DELNEXTHOP, 0, AF_UNSPEC, id);
    if (auto st = im.request(nlh, what + ": delete next hop", {ENOENT}); !st) return st;
  }
  const int oif = static_cast<int>(if_nametoindex(hop.dev.c_str()));
  uint8_t mac[6];
  if (!oif || hop.mac.empty() || !macBytes(hop.mac, mac)) return okStatus();
  std::vector<IpAddress> vias = {hop.via4};
  if (hop.via6) vias.push_back(*hop.via6);
  for (const auto& via : vias) {
    Buf b;
    auto* nlh = neighMsg(b, RTM_DELNEIGH, 0, family(via), oif);
    mnl_attr_put(nlh, NDA_DST, via.size(), via.bytes());
    if (auto st = im.request(nlh, what + ": delete neighbour", {ENOENT}); !st) return st;
  }
  Buf b;
  auto* nlh = neighMsg(b, RTM_DELNEIGH, 0, AF_BRIDGE, oif);
  mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
  mnl_attr_put(nlh, NDA_DST, 4, hop.via4.bytes());
  return im.request(nlh, what + ": delete tunnel forwarding entry", {ENOENT});
}

Status SteerRoutes::destroyAll() {
  Impl& im = *impl_;
  // What exists, from the kernel (slots with rules or blackholes, next hops).
  auto obs = observe();
  if (!obs) return obs.error();
  std::set<int> present(obs->slots.begin(), obs->slots.end());
  for (const auto& [s, h] : obs->hops) present.insert(s);
  {
    nl_cache* raw = nullptr;
    if (int err = rtnl_rule_alloc_cache(im.nl.get(), AF_UNSPEC, &raw); err < 0)
      return nlError("libnl: list rules", err);
    CachePtr cache(raw);
    for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
      auto* r = reinterpret_cast<rtnl_rule*>(o);
      const uint32_t t = rtnl_rule_get_table(r);
      if (rtnl_rule_get_prio(r) == kRulePriority && t > kTableBase && t <= kTableBase + kMaxSlots)
        present.insert(static_cast<int>(t - kTableBase));
    }
  }
  for (int s : present) {
    for (uint32_t id :
         {kNexthopBase4 + static_cast<uint32_t>(s), kNexthopBase6 + static_cast<uint32_t>(s)}) {
      Buf b;
      auto* nlh = nexthopMsg(b, RTM_DELNEXTHOP, 0, AF_UNSPEC, id);
      if (auto st = im.request(nlh, "delete next hop", {ENOENT}); !st) return st;
    }
    for (int fam : {AF_INET, AF_INET6}) {
      Buf b;
      auto* nlh = routeMsg(b, RTM_DELROUTE, 0, fam, tableOf(s), RTN_BLACKHOLE);
      mnl_attr_put_u32(nlh, RTA_PRIORITY, kBlackholeMetric);
      if (auto st = im.request(nlh, "delete blackhole", {ENOENT, ESRCH}); !st) return st;
      auto r = slotRule(fam, s);
      int err = rtnl_rule_delete(im.nl.get(), r.get(), 0);
      if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NOADDR && err != -NLE_FAILURE)
        return nlError("libnl: delete rule", err);
    }
  }
  return tunnel_.empty() ? okStatus() : deleteTunnel(tunnel_);
}

}  // namespace nsegress::netlink
