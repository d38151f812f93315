#include "nsegress/netlink/fence.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter_arp.h>
#include <netinet/in.h>

#include <linux/if_ether.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <vector>

#include "nsegress/common/fd.h"

namespace nsegress::netlink {

namespace {

using MnlPtr = Handle<mnl_socket, mnl_socket_close>;
using TablePtr = Handle<nftnl_table, nftnl_table_free>;
using ChainPtr = Handle<nftnl_chain, nftnl_chain_free>;
using RulePtr = Handle<nftnl_rule, nftnl_rule_free>;
using SetPtr = Handle<nftnl_set, nftnl_set_free>;

constexpr uint32_t kTypeIpv4Addr = 7;
constexpr uint32_t kTypeIpv6Addr = 8;

struct SetDef {
  uint16_t family;  // table family
  const char* name;
  bool v4;
  bool timeout;
  uint32_t id;
};
// The inet table's sets, then the arp table's, then the netdev table's (on
// the uplink's egress hook: the last point before the wire).
constexpr SetDef kSets[] = {
    {NFPROTO_INET, "hostable4", true, false, 1},    {NFPROTO_INET, "live4", true, true, 2},
    {NFPROTO_INET, "hostable6", false, false, 3},   {NFPROTO_INET, "live6", false, true, 4},
    {NFPROTO_ARP, "hostable4", true, false, 5},     {NFPROTO_ARP, "live4", true, true, 6},
    {NFPROTO_NETDEV, "hostable4", true, false, 7},  {NFPROTO_NETDEV, "live4", true, true, 8},
    {NFPROTO_NETDEV, "hostable6", false, false, 9}, {NFPROTO_NETDEV, "live6", false, true, 10},
};

// One nftables batch (one kernel transaction).
class Batch {
 public:
  explicit Batch(uint32_t& seq) : seq_(seq), buf_(1 << 20) {
    b_ = mnl_nlmsg_batch_start(buf_.data(), buf_.size());
    nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(b_)), seq_++);
    mnl_nlmsg_batch_next(b_);
  }
  ~Batch() { mnl_nlmsg_batch_stop(b_); }
  nlmsghdr* msg(uint16_t type, uint16_t family, uint16_t flags) {
    return nftnl_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(b_)), type, family,
                                 flags, seq_++);
  }
  void next() { mnl_nlmsg_batch_next(b_); }
  std::pair<const void*, size_t> finish() {
    nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(b_)), seq_++);
    mnl_nlmsg_batch_next(b_);
    return {mnl_nlmsg_batch_head(b_), mnl_nlmsg_batch_size(b_)};
  }

 private:
  uint32_t& seq_;
  std::vector<char> buf_;
  mnl_nlmsg_batch* b_;
};

void addExpr(nftnl_rule* r, const char* name, const std::function<void(nftnl_expr*)>& set) {
  nftnl_expr* e = nftnl_expr_alloc(name);
  set(e);
  nftnl_rule_add_expr(r, e);
}
void load(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len) {
  addExpr(r, "payload", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  });
}
void meta(nftnl_rule* r, uint32_t key, uint8_t want) {
  addExpr(r, "meta", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  });
  addExpr(r, "cmp", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &want, 1);
  });
}
// The frame's ethertype (netdev family).
void etherType(nftnl_rule* r, uint16_t type) {
  addExpr(r, "meta", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_PROTOCOL);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  });
  const uint16_t be = htons(type);
  addExpr(r, "cmp", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &be, 2);
  });
}
void lookup(nftnl_rule* r, const SetDef& s, bool invert) {
  addExpr(r, "lookup", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, s.name);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, s.id);
    if (invert) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  });
}
void countAndDrop(nftnl_rule* r) {
  addExpr(r, "counter", [](nftnl_expr*) {});
  addExpr(r, "immediate", [](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, NF_DROP);
  });
}
const SetDef& set(uint16_t family, const char* name) {
  for (const auto& s : kSets)
    if (s.family == family && std::strcmp(s.name, name) == 0) return s;
  std::abort();  // a name of this file
}

}  // namespace

struct Fence::Impl {
  MnlPtr sock;
  uint32_t seq = static_cast<uint32_t>(time(nullptr)) << 8;
  std::string table;
  std::string uplink;  // "" no netdev table
  std::vector<uint16_t> families() const {
    std::vector<uint16_t> f{NFPROTO_INET, NFPROTO_ARP};
    if (!uplink.empty()) f.push_back(NFPROTO_NETDEV);
    return f;
  }
  std::vector<char> rx = std::vector<char>(1 << 16);

  Status send(Batch& b) {
    auto [data, len] = b.finish();
    if (mnl_socket_sendto(sock.get(), data, len) < 0)
      return makeError(errno, std::string("fence: send: ") + strerror(errno));
    // Processed inside sendmsg; only failures are answered.
    const int fd = mnl_socket_get_fd(sock.get());
    for (;;) {
      ssize_t n = recv(fd, rx.data(), rx.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return okStatus();
        return makeError(errno, std::string("fence: read: ") + strerror(errno));
      }
      int left = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<nlmsghdr*>(rx.data()); mnl_nlmsg_ok(nlh, left);
           nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type != NLMSG_ERROR) continue;
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(nlh));
        if (err->error != 0) {
          // Drain what is left, then report the first failure.
          while (recv(fd, rx.data(), rx.size(), MSG_DONTWAIT) > 0) {
          }
          return makeError(-err->error, std::string("fence: kernel refused the transaction: ") +
                                            strerror(-err->error));
        }
      }
    }
  }

  bool exists(uint16_t family) {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    auto* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETTABLE, family, NLM_F_ACK, ++seq);
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0) return false;
    bool found = false;
    for (;;) {
      ssize_t n = mnl_socket_recvfrom(sock.get(), rx.data(), rx.size());
      if (n <= 0) return found;
      int left = static_cast<int>(n);
      for (auto* m = reinterpret_cast<nlmsghdr*>(rx.data()); mnl_nlmsg_ok(m, left);
           m = mnl_nlmsg_next(m, &left)) {
        if (m->nlmsg_seq != seq) continue;
        if (m->nlmsg_type == NLMSG_ERROR) return found;  // the ack (or ENOENT)
        found = true;
      }
    }
  }

  void addTable(Batch& b, uint16_t family) {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.c_str());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, family);
    nftnl_table_nlmsg_build_payload(b.msg(NFT_MSG_NEWTABLE, family, NLM_F_CREATE), t.get());
    b.next();
  }
  void addChain(Batch& b, uint16_t family, const char* name, uint32_t hook, int prio) {
    ChainPtr c(nftnl_chain_alloc());
    if (family == NFPROTO_NETDEV) nftnl_chain_set_str(c.get(), NFTNL_CHAIN_DEV, uplink.c_str());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, name);
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, "filter");
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, prio);
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
    nftnl_chain_nlmsg_build_payload(b.msg(NFT_MSG_NEWCHAIN, family, NLM_F_CREATE), c.get());
    b.next();
  }
  RulePtr rule(uint16_t family, const char* chain) {
    RulePtr r(nftnl_rule_alloc());
    nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
    nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, family);
    return r;
  }
  void addRule(Batch& b, uint16_t family, RulePtr r) {
    nftnl_rule_nlmsg_build_payload(b.msg(NFT_MSG_NEWRULE, family, NLM_F_CREATE | NLM_F_APPEND),
                                   r.get());
    b.next();
  }
  // `addr` loaded from (base, offset, len); fenced unless live.
  void fenceRule(Batch& b, uint16_t family, const char* chain, bool v4, uint32_t base,
                 uint32_t offset, const std::function<void(nftnl_rule*)>& match = {}) {
    auto r = rule(family, chain);
    if (family == NFPROTO_INET) meta(r.get(), NFT_META_NFPROTO, v4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
    if (match) match(r.get());
    load(r.get(), base, offset, v4 ? 4 : 16);
    lookup(r.get(), set(family, v4 ? "hostable4" : "hostable6"), false);
    lookup(r.get(), set(family, v4 ? "live4" : "live6"), true);
    countAndDrop(r.get());
    addRule(b, family, std::move(r));
  }

  void create(Batch& b) {
    for (uint16_t f : families()) addTable(b, f);
    for (const auto& s : kSets) {
      if (s.family == NFPROTO_NETDEV && uplink.empty()) continue;
      SetPtr st(nftnl_set_alloc());
      nftnl_set_set_str(st.get(), NFTNL_SET_TABLE, table.c_str());
      nftnl_set_set_str(st.get(), NFTNL_SET_NAME, s.name);
      nftnl_set_set_u32(st.get(), NFTNL_SET_FAMILY, s.family);
      nftnl_set_set_u32(st.get(), NFTNL_SET_KEY_TYPE, s.v4 ? kTypeIpv4Addr : kTypeIpv6Addr);
      nftnl_set_set_u32(st.get(), NFTNL_SET_KEY_LEN, s.v4 ? 4 : 16);
      nftnl_set_set_u32(st.get(), NFTNL_SET_FLAGS, s.timeout ? NFT_SET_TIMEOUT : 0);
      nftnl_set_set_u32(st.get(), NFTNL_SET_ID, s.id);
      nftnl_set_nlmsg_build_payload(b.msg(NFT_MSG_NEWSET, s.family, NLM_F_CREATE), st.get());
      b.next();
    }
    addChain(b, NFPROTO_INET, "egress", NF_INET_POST_ROUTING, 300);   // after SNAT
    addChain(b, NFPROTO_INET, "ingress", NF_INET_PRE_ROUTING, -300);  // before conntrack
    addChain(b, NFPROTO_ARP, "out", NF_ARP_OUT, 0);
    addChain(b, NFPROTO_ARP, "in", NF_ARP_IN, 0);
    fenceRule(b, NFPROTO_INET, "egress", true, NFT_PAYLOAD_NETWORK_HEADER, 12);
    fenceRule(b, NFPROTO_INET, "egress", false, NFT_PAYLOAD_NETWORK_HEADER, 8);
    // A neighbour advertisement for a fenced target, whatever its source.
    fenceRule(b, NFPROTO_INET, "egress", false, NFT_PAYLOAD_TRANSPORT_HEADER, 8, [](nftnl_rule* r) {
      meta(r, NFT_META_L4PROTO, IPPROTO_ICMPV6);
      addExpr(r, "payload", [](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 0);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
      });
      const uint8_t na = 136;
      addExpr(r, "cmp", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &na, 1);
      });
    });
    fenceRule(b, NFPROTO_INET, "ingress", true, NFT_PAYLOAD_NETWORK_HEADER, 16);
    fenceRule(b, NFPROTO_INET, "ingress", false, NFT_PAYLOAD_NETWORK_HEADER, 24);
    // ARP over Ethernet: sender IP at 14, target IP at 24.
    fenceRule(b, NFPROTO_ARP, "out", true, NFT_PAYLOAD_NETWORK_HEADER, 14);
    fenceRule(b, NFPROTO_ARP, "in", true, NFT_PAYLOAD_NETWORK_HEADER, 24);
    if (uplink.empty()) return;
    // On the uplink's egress hook, the last point before the wire: a packet
    // that passed the postrouting fence while the address was live but was
    // held afterwards (in the neighbour queue while the next hop was being
    // resolved, e.g. during a cut uplink) is dropped if the address is
    // fenced by the time it is sent.
    addChain(b, NFPROTO_NETDEV, "egress", NF_NETDEV_EGRESS, 0);
    fenceRule(b, NFPROTO_NETDEV, "egress", true, NFT_PAYLOAD_NETWORK_HEADER, 12,
              [](nftnl_rule* r) { etherType(r, ETH_P_IP); });
    fenceRule(b, NFPROTO_NETDEV, "egress", false, NFT_PAYLOAD_NETWORK_HEADER, 8,
              [](nftnl_rule* r) { etherType(r, ETH_P_IPV6); });
    fenceRule(b, NFPROTO_NETDEV, "egress", true, NFT_PAYLOAD_NETWORK_HEADER, 14,
              [](nftnl_rule* r) { etherType(r, ETH_P_ARP); });
  }
};

Result<std::unique_ptr<Fence>> Fence::open(std::string uplink, std::string table) {
  auto impl = std::make_unique<Impl>();
  impl->table = std::move(table);
  impl->uplink = std::move(uplink);
  impl->sock.reset(mnl_socket_open(NETLINK_NETFILTER));
  if (!impl->sock) return makeError(errno, std::string("fence: socket: ") + strerror(errno));
  if (mnl_socket_bind(impl->sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    return makeError(errno, std::string("fence: bind: ") + strerror(errno));
  std::unique_ptr<Fence> f(new Fence(std::move(impl)));
  auto& i = *f->impl_;
  const auto fam = i.families();
  if (!std::all_of(fam.begin(), fam.end(), [&](uint16_t f) { return i.exists(f); })) {
    // Half a fence (one table removed by hand): both are built again, closed
    // (the safe direction) until the agent's first proof.
    if (auto r = f->destroy(); !r) return r.error();
    Batch b(i.seq);
    i.create(b);
    if (auto r = i.send(b); !r) return r.error();
  }
  return f;
}

Fence::Fence(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Fence::~Fence() = default;

Status Fence::apply(const std::set<IpAddress>& hostable,
                    const std::map<IpAddress, std::optional<std::chrono::milliseconds>>& live) {
  Batch b(impl_->seq);
  for (const auto& s : kSets) {
    if (s.family == NFPROTO_NETDEV && impl_->uplink.empty()) continue;
    // Flush (a delete without elements), then the new elements.
    SetPtr flush(nftnl_set_alloc());
    nftnl_set_set_str(flush.get(), NFTNL_SET_TABLE, impl_->table.c_str());
    nftnl_set_set_str(flush.get(), NFTNL_SET_NAME, s.name);
    nftnl_set_elems_nlmsg_build_payload(b.msg(NFT_MSG_DELSETELEM, s.family, 0), flush.get());
    b.next();
    SetPtr add(nftnl_set_alloc());
    nftnl_set_set_str(add.get(), NFTNL_SET_TABLE, impl_->table.c_str());
    nftnl_set_set_str(add.get(), NFTNL_SET_NAME, s.name);
    size_t n = 0;
    auto element = [&](const IpAddress& ip, std::optional<std::chrono::milliseconds> timeout) {
      if (ip.isV4() != s.v4) return;
      nftnl_set_elem* e = nftnl_set_elem_alloc();
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, ip.bytes(), s.v4 ? 4 : 16);
      if (timeout)
        nftnl_set_elem_set_u64(e, NFTNL_SET_ELEM_TIMEOUT,
                               static_cast<uint64_t>(std::max<int64_t>(1, timeout->count())));
      nftnl_set_elem_add(add.get(), e);
      ++n;
    };
    if (s.timeout)
      for (const auto& [ip, t] : live) element(ip, t);
    else
      for (const auto& ip : hostable) element(ip, std::nullopt);
    if (!n) continue;
    nftnl_set_elems_nlmsg_build_payload(b.msg(NFT_MSG_NEWSETELEM, s.family, NLM_F_CREATE),
                                        add.get());
    b.next();
  }
  return impl_->send(b);
}

Status Fence::destroy() {
  for (uint16_t family : {NFPROTO_INET, NFPROTO_ARP, NFPROTO_NETDEV}) {
    Batch b(impl_->seq);
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, impl_->table.c_str());
    nftnl_table_nlmsg_build_payload(b.msg(NFT_MSG_DELTABLE, family, 0), t.get());
    b.next();
    if (auto r = impl_->send(b); !r && r.error().code != ENOENT) return r;
  }
  return okStatus();
}

}  // namespace nsegress::netlink
