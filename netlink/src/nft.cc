#include "nsegress/netlink/nft.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "nsegress/common/fd.h"

namespace nsegress::netlink {

using gateway::kBuiltinCounters;
using gateway::kInboundCounter;
using gateway::kSpoofedCounter;
using gateway::kSteerSpoofedCounter;
using gateway::kTunnelForeignCounter;
using gateway::kUnsteeredCounter;
using gateway::kUplinkSpoofedCounter;
using gateway::NftOp;

namespace {

// ---- RAII for libnftnl and libmnl objects ----------------------------------
using TablePtr = Handle<nftnl_table, nftnl_table_free>;
using ChainPtr = Handle<nftnl_chain, nftnl_chain_free>;
using RulePtr = Handle<nftnl_rule, nftnl_rule_free>;
using SetPtr = Handle<nftnl_set, nftnl_set_free>;
using ObjPtr = Handle<nftnl_obj, nftnl_obj_free>;
using MnlPtr = Handle<mnl_socket, mnl_socket_close>;

constexpr uint16_t kFamily = NFPROTO_INET;
constexpr uint32_t kTypeIpv4Addr = 7;  // nft datatype ids, so `nft list` prints addresses
constexpr uint32_t kTypeIpv6Addr = 8;
constexpr uint32_t kTypeInetService = 13;
constexpr size_t kMaxMsg = 8192;       // a message of one object
constexpr size_t kMaxElemBytes = 192;  // an element: key, data or counter name, nesting

constexpr uint32_t kTypeMark = 19;
// A concatenation's type: each part's type in 6 bits (nftables' encoding).
constexpr uint32_t concatType(uint32_t a, uint32_t b) {
  return (a << 6) | b;
}

struct SetSpec {
  const char* name;
  Family family;  // of the (last part of the) key
  enum { kPlain, kMap, kObjMap, kMarkMap, kPeers, kBlockMap } kind;
};
constexpr SetSpec kSets[] = {
    {NftNames::kSnat4, Family::V4, SetSpec::kMap},
    {NftNames::kSnat6, Family::V6, SetSpec::kMap},
    {NftNames::kTx4, Family::V4, SetSpec::kObjMap},
    {NftNames::kTx6, Family::V6, SetSpec::kObjMap},
    {NftNames::kPending4, Family::V4, SetSpec::kObjMap},
    {NftNames::kPending6, Family::V6, SetSpec::kObjMap},
    {NftNames::kOwned4, Family::V4, SetSpec::kPlain},
    {NftNames::kOwned6, Family::V6, SetSpec::kPlain},
    {NftNames::kFlush4, Family::V4, SetSpec::kMap},
    {NftNames::kFlush6, Family::V6, SetSpec::kMap},
    {NftNames::kSteer4, Family::V4, SetSpec::kMarkMap},
    {NftNames::kSteer6, Family::V6, SetSpec::kMarkMap},
    {NftNames::kReturn4, Family::V4, SetSpec::kMarkMap},
    {NftNames::kReturn6, Family::V6, SetSpec::kMarkMap},
    {NftNames::kPeers4, Family::V4, SetSpec::kPeers},  // node (IPv4) . pod
    {NftNames::kPeers6, Family::V6, SetSpec::kPeers},
    {NftNames::kNodes4, Family::V4, SetSpec::kPlain},
    {NftNames::kBlocks4, Family::V4, SetSpec::kBlockMap},  // pod -> egress . port range
    {NftNames::kBlocks6, Family::V6, SetSpec::kBlockMap},
};

// A port block's map value, as nftables lays out an address . port range:
// address, port (network order, padded to 4), address, port. The nat
// expression reads them from consecutive 32-bit registers.
size_t blockValueLen(Family f) {
  return f == Family::V4 ? 16 : 40;
}
void encodeBlockValue(uint8_t* out, const IpAddress& egress, uint16_t first, uint16_t last) {
  const size_t a = egress.size();
  std::memset(out, 0, 2 * (a + 4));
  const uint16_t f = htons(first), l = htons(last);
  std::memcpy(out, egress.bytes(), a);
  std::memcpy(out + a, &f, 2);
  std::memcpy(out + a + 4, egress.bytes(), a);
  std::memcpy(out + 2 * a + 4, &l, 2);
}

const char* setFor(NftOp::Kind k, Family f) {
  const bool v4 = f == Family::V4;
  switch (k) {
    case NftOp::Kind::kAddSnat:
    case NftOp::Kind::kDelSnat:
      return v4 ? NftNames::kSnat4 : NftNames::kSnat6;
    case NftOp::Kind::kAddTx:
    case NftOp::Kind::kDelTx:
      return v4 ? NftNames::kTx4 : NftNames::kTx6;
    case NftOp::Kind::kAddPending:
    case NftOp::Kind::kDelPending:
      return v4 ? NftNames::kPending4 : NftNames::kPending6;
    case NftOp::Kind::kAddOwned:
    case NftOp::Kind::kDelOwned:
      return v4 ? NftNames::kOwned4 : NftNames::kOwned6;
    case NftOp::Kind::kAddFlushRec:
    case NftOp::Kind::kDelFlushRec:
      return v4 ? NftNames::kFlush4 : NftNames::kFlush6;
    case NftOp::Kind::kAddSteer:
    case NftOp::Kind::kDelSteer:
      return v4 ? NftNames::kSteer4 : NftNames::kSteer6;
    case NftOp::Kind::kAddPeer:
    case NftOp::Kind::kDelPeer:
      return v4 ? NftNames::kPeers4 : NftNames::kPeers6;
    case NftOp::Kind::kAddReturn:
    case NftOp::Kind::kDelReturn:
      return v4 ? NftNames::kReturn4 : NftNames::kReturn6;
    case NftOp::Kind::kAddNode:
    case NftOp::Kind::kDelNode:
      return NftNames::kNodes4;  // tunnels run over IPv4 (the kernel refuses an IPv6 key)
    case NftOp::Kind::kAddBlock:
    case NftOp::Kind::kDelBlock:
      return v4 ? NftNames::kBlocks4 : NftNames::kBlocks6;
    default:
      return nullptr;
  }
}

// ---- attribute walks (libmnl's for_each macros do not compile as C++) -------
template <typename F>
void forEachAttr(const nlmsghdr* nlh, size_t offset, F&& f) {
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    f(attr);
    attr = mnl_attr_next(attr);
  }
}
template <typename F>
void forEachNested(const nlattr* nest, F&& f) {
  const auto* attr = static_cast<const nlattr*>(mnl_attr_get_payload(nest));
  const char* tail = reinterpret_cast<const char*>(nest) + mnl_attr_get_len(nest);
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    f(attr);
    attr = mnl_attr_next(attr);
  }
}

// ---- expression helpers ----------------------------------------------------
void addExpr(nftnl_rule* r, const char* name, const std::function<void(nftnl_expr*)>& set) {
  nftnl_expr* e = nftnl_expr_alloc(name);
  set(e);
  nftnl_rule_add_expr(r, e);  // rule takes ownership
}

void metaLoad(nftnl_rule* r, uint32_t key) {
  addExpr(r, "meta", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
  });
}

void cmpEq(nftnl_rule* r, const void* data, uint32_t len) {
  addExpr(r, "cmp", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  });
}

void matchNfproto(nftnl_rule* r, Family f) {
  metaLoad(r, NFT_META_NFPROTO);
  uint8_t proto = f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
  cmpEq(r, &proto, sizeof proto);
}

void matchOifname(nftnl_rule* r, const std::string& ifname) {
  metaLoad(r, NFT_META_OIFNAME);
  char name[IFNAMSIZ] = {};
  std::strncpy(name, ifname.c_str(), IFNAMSIZ - 1);
  cmpEq(r, name, IFNAMSIZ);
}

void loadSaddr(nftnl_rule* r, Family f) {
  addExpr(r, "payload", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, f == Family::V4 ? 12 : 8);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, f == Family::V4 ? 4 : 16);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
  });
}

void objrefMap(nftnl_rule* r, const char* set) {
  addExpr(r, "objref", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_SET_SREG, NFT_REG_1);
    nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_SET_NAME, set);
  });
}

void verdict(nftnl_rule* r, int v) {
  addExpr(r, "immediate", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(v));
  });
}

RulePtr newRule(const NftConfig& c, const char* chain) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, c.table.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain);
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, kFamily);
  return r;
}

// `counter name NAME` (a named counter object of the table).
void objrefCounter(nftnl_rule* r, const char* name) {
  addExpr(r, "objref", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
    nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, name);
  });
}

void cmpOp(nftnl_rule* r, uint32_t op, const void* data, uint32_t len, uint32_t reg = NFT_REG_1) {
  addExpr(r, "cmp", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  });
}

void matchIifname(nftnl_rule* r, const std::string& ifname, bool equal) {
  metaLoad(r, NFT_META_IIFNAME);
  char name[IFNAMSIZ] = {};
  std::strncpy(name, ifname.c_str(), IFNAMSIZ - 1);
  cmpOp(r, equal ? NFT_CMP_EQ : NFT_CMP_NEQ, name, IFNAMSIZ);
}

void payload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len,
             uint32_t reg = NFT_REG_1) {
  addExpr(r, "payload", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg);
  });
}

void loadDaddr(nftnl_rule* r, Family f) {
  payload(r, NFT_PAYLOAD_NETWORK_HEADER, f == Family::V4 ? 16 : 24, f == Family::V4 ? 4 : 16);
}

void bitwiseAnd(nftnl_rule* r, const void* mask, uint32_t len) {
  std::vector<uint8_t> zero(len, 0);
  addExpr(r, "bitwise", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
    nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero.data(), len);
  });
}

// `ip daddr|saddr & mask ==/!= net` for one CIDR of the rule's family.
void matchCidr(nftnl_rule* r, const Cidr& c, bool daddr, bool equal) {
  const Family f = c.network().family();
  const uint32_t len = f == Family::V4 ? 4 : 16;
  if (daddr)
    loadDaddr(r, f);
  else
    loadSaddr(r, f);
  uint8_t mask[16] = {};
  for (int i = 0; i < c.prefix(); ++i) mask[i / 8] |= static_cast<uint8_t>(0x80 >> (i % 8));
  bitwiseAnd(r, mask, len);
  cmpOp(r, equal ? NFT_CMP_EQ : NFT_CMP_NEQ, c.network().bytes(), len);
}

void lookup(nftnl_rule* r, const char* set, uint32_t sreg = NFT_REG_1, bool invert = false) {
  addExpr(r, "lookup", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    if (invert) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  });
}

void ctLoad(nftnl_rule* r, uint32_t key) {
  addExpr(r, "ct", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  });
}

// `ct mark & mask != 0`: a flow nsegress steers.
void matchSteered(nftnl_rule* r, uint32_t mask) {
  ctLoad(r, NFT_CT_MARK);
  bitwiseAnd(r, &mask, sizeof mask);
  const uint32_t zero = 0;
  cmpOp(r, NFT_CMP_NEQ, &zero, sizeof zero);
}

// `ct direction original|reply`.
void matchDirection(nftnl_rule* r, bool reply) {
  ctLoad(r, NFT_CT_DIRECTION);
  const uint8_t dir = reply ? 1 : 0;  // IP_CT_DIR_REPLY : IP_CT_DIR_ORIGINAL
  cmpEq(r, &dir, sizeof dir);
}

// `ct state new`.
void matchNew(nftnl_rule* r) {
  ctLoad(r, NFT_CT_STATE);
  const uint32_t is_new = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;
  bitwiseAnd(r, &is_new, sizeof is_new);
  cmpOp(r, NFT_CMP_NEQ, &zero, sizeof zero);
}

// `meta mark set <reg 1>`.
void setMetaMark(nftnl_rule* r) {
  addExpr(r, "meta", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
  });
}

// `ct mark set ip saddr map @map`.
void ctMarkFromMap(nftnl_rule* r, Family f, const char* map) {
  loadSaddr(r, f);
  addExpr(r, "lookup", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_1);
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, map);
  });
  addExpr(r, "ct", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, NFT_REG_1);
  });
}

// `ct mark & flag == 0 ct mark & mask != 0`: a flow this node steers out
// (not one that arrived through the tunnel).
void matchSteeredOut(nftnl_rule* r, uint32_t mask, uint32_t flag) {
  ctLoad(r, NFT_CT_MARK);
  bitwiseAnd(r, &flag, sizeof flag);
  const uint32_t zero = 0;
  cmpEq(r, &zero, sizeof zero);
  matchSteered(r, mask);
}

void matchL4(nftnl_rule* r, uint8_t proto) {
  metaLoad(r, NFT_META_L4PROTO);
  cmpEq(r, &proto, sizeof proto);
}

// `fib <flags> <result>` into reg 1.
void fib(nftnl_rule* r, uint32_t flags, uint32_t result) {
  addExpr(r, "fib", [&](nftnl_expr* e) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, result);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, flags);
  });
}

// The offsets, in a VXLAN packet's UDP payload seen from its transport
// header, of the inner frame's ethertype and source addresses:
// UDP (8) + VXLAN (8) + Ethernet (14).
constexpr uint32_t kInnerEthertype = 8 + 8 + 12;
constexpr uint32_t kInnerSaddr4 = 8 + 8 + 14 + 12;
constexpr uint32_t kInnerSaddr6 = 8 + 8 + 14 + 8;
constexpr uint32_t kInnerDaddr4 = 8 + 8 + 14 + 16;
constexpr uint32_t kInnerDaddr6 = 8 + 8 + 14 + 24;

// `meta nfproto ipv4 meta l4proto udp udp dport PORT` (the tunnel's packets).
void matchTunnel(nftnl_rule* r, uint16_t port) {
  matchNfproto(r, Family::V4);
  matchL4(r, IPPROTO_UDP);
  payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
  const uint16_t p = htons(port);
  cmpEq(r, &p, sizeof p);
}

// The whole rule set. Per packet: one map lookup per hook and family,
// whatever the number of namespaces.
//   forward:     [steered TCP SYN: tcp option maxseg size > MSS set MSS]
//                [oifname TUNNEL meta mark set meta mark & ~MASK]
//                [ct direction reply ct mark & MASK != 0 accept]
//                iifname != UPLINK [iifname != TUNNEL] fib saddr . iif oif 0
//                  counter name spoofed drop
//                meta nfproto ipv4 [ip daddr not in CLUSTER] counter name ip saddr
//                  map @pending4 drop                           (and ipv6)
//                meta nfproto ipv4 oifname UPLINK counter name ip saddr map @tx4   (and ipv6)
//   steer:       (prerouting, after DNAT; with steering)
//                [iifname UPLINK ip saddr @snat4|@pending4|@steer4|CLUSTER
//                   counter name uplink-spoofed drop]          (dedicated uplink)
//                meta nfproto ipv4 ct state new ip saddr @steer4 [ip daddr not in CLUSTER]
//                  fib daddr type != local fib saddr . iif oif != 0
//                  ct mark set ip saddr map @steer4             (and ipv6)
//                [tunnel: iifname TUNNEL ct direction original ct mark & FLAG == 0
//                  ct mark set ip saddr map @return4]
//                ct direction original ct mark & FLAG == 0 ct mark & MASK != 0
//                  meta mark set ct mark                        (steered out)
//                [ct direction reply ct mark & FLAG != 0 meta mark set ct mark & MASK]
//   postrouting: [steered out: snat to ip saddr]              (never masqueraded)
//                meta nfproto ipv4 oifname UPLINK meta l4proto tcp|udp
//                  snat ip to ip saddr map @blocks4 (address . port range; and ipv6)
//                meta nfproto ipv4 oifname UPLINK snat ip to ip saddr map @snat4 (and ipv6)
//   input:       meta nfproto ipv4 ip daddr @owned4 ct state & (established|related) == 0
//                  counter name inbound drop          (and ipv6 with @owned6)
//                [tunnel: udp dport PORT ip saddr != @nodes4 counter name tunnel-foreign drop
//                 inner daddr @steer4 accept              (a reply to a pod steered from here)
//                 inner IPv4: ip saddr . inner saddr != @peers4 counter name steer-spoofed drop
//                 inner IPv6: ip saddr . inner saddr != @peers6 counter name steer-spoofed drop
//                 inner neither: counter name steer-spoofed drop]
std::vector<std::pair<const char*, RulePtr>> buildRules(const NftConfig& c) {
  std::vector<std::pair<const char*, RulePtr>> rules;
  auto clusterOf = [&](Family f) {
    std::vector<Cidr> out;
    for (const auto& cidr : c.cluster)
      if (cidr.network().family() == f) out.push_back(cidr);
    return out;
  };
  if (c.steer) {
    // Steered TCP (both directions) never needs fragmentation or path MTU
    // discovery through the tunnel: the SYNs' MSS is clamped.
    for (Family f : {Family::V4, Family::V6}) {
      const uint16_t mss = f == Family::V4 ? c.mss4 : c.mss6;
      if (!mss) continue;
      auto r = newRule(c, NftNames::kForward);
      matchNfproto(r.get(), f);
      matchL4(r.get(), IPPROTO_TCP);
      matchSteered(r.get(), c.mark_mask);
      payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1);
      const uint8_t syn = 0x02, zero = 0;
      bitwiseAnd(r.get(), &syn, 1);
      cmpOp(r.get(), NFT_CMP_NEQ, &zero, 1);
      const uint16_t be = htons(mss);
      addExpr(r.get(), "exthdr", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_DREG, NFT_REG_1);
        nftnl_expr_set_u8(e, NFTNL_EXPR_EXTHDR_TYPE, 2);  // TCP option: maximum segment size
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_OFFSET, 2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_LEN, 2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_OP, NFT_EXTHDR_OP_TCPOPT);
      });
      cmpOp(r.get(), NFT_CMP_GT, &be, sizeof be);
      addExpr(r.get(), "immediate", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
        nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &be, sizeof be);
      });
      addExpr(r.get(), "exthdr", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_SREG, NFT_REG_1);
        nftnl_expr_set_u8(e, NFTNL_EXPR_EXTHDR_TYPE, 2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_OFFSET, 2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_LEN, 2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_EXTHDR_OP, NFT_EXTHDR_OP_TCPOPT);
      });
      rules.emplace_back(NftNames::kForward, std::move(r));
    }
  }
  if (c.steer && !c.tunnel.empty()) {
    // The packet mark chose the route; the tunnel must not route its outer
    // packet by it too (that would send it back into the tunnel): our bits
    // are cleared once the packet is headed for the tunnel.
    auto r = newRule(c, NftNames::kForward);
    matchOifname(r.get(), c.tunnel);
    metaLoad(r.get(), NFT_META_MARK);
    const uint32_t keep = ~c.mark_mask;
    bitwiseAnd(r.get(), &keep, sizeof keep);
    setMetaMark(r.get());
    rules.emplace_back(NftNames::kForward, std::move(r));
  }
  if (c.steer) {
    for (Family f : {Family::V4, Family::V6}) {
      const char* steer = f == Family::V4 ? NftNames::kSteer4 : NftNames::kSteer6;
      if (!c.tunnel.empty()) {
        // From the tunnel to a pod steered from here: only replies of its
        // steered flows (a node cannot open flows to them as anyone).
        auto r = newRule(c, NftNames::kForward);
        matchIifname(r.get(), c.tunnel, true);
        matchNfproto(r.get(), f);
        loadDaddr(r.get(), f);
        lookup(r.get(), steer);
        matchDirection(r.get(), false);
        objrefCounter(r.get(), kSteerSpoofedCounter);
        verdict(r.get(), NF_DROP);
        rules.emplace_back(NftNames::kForward, std::move(r));
      }
      // A steered pod's packet leaving the cluster unmarked (a flow older
      // than its steering), invalid or untracked: dropped, never let out
      // with the node's address.
      for (bool untracked : {false, true}) {
        auto r = newRule(c, NftNames::kForward);
        matchNfproto(r.get(), f);
        loadSaddr(r.get(), f);
        lookup(r.get(), steer);
        for (const auto& cidr : clusterOf(f)) matchCidr(r.get(), cidr, true, false);
        const uint32_t zero = 0;
        if (untracked) {
          ctLoad(r.get(), NFT_CT_STATE);
          const uint32_t bad = NF_CT_STATE_INVALID_BIT | NF_CT_STATE_UNTRACKED_BIT;
          bitwiseAnd(r.get(), &bad, sizeof bad);
          cmpOp(r.get(), NFT_CMP_NEQ, &zero, sizeof zero);
        } else {
          matchDirection(r.get(), false);
          ctLoad(r.get(), NFT_CT_MARK);
          bitwiseAnd(r.get(), &c.mark_mask, sizeof c.mark_mask);
          cmpEq(r.get(), &zero, sizeof zero);
        }
        objrefCounter(r.get(), kUnsteeredCounter);
        verdict(r.get(), NF_DROP);
        rules.emplace_back(NftNames::kForward, std::move(r));
      }
    }
    {
      // A steered flow leaves by steering's device only (another policy
      // rule that wins over ours must not carry it out with its pod's
      // address).
      auto r = newRule(c, NftNames::kForward);
      matchDirection(r.get(), false);
      matchSteeredOut(r.get(), c.mark_mask, c.return_flag);
      metaLoad(r.get(), NFT_META_OIFNAME);
      char name[IFNAMSIZ] = {};
      std::strncpy(name, (c.tunnel.empty() ? c.underlay : c.tunnel).c_str(), IFNAMSIZ - 1);
      cmpOp(r.get(), NFT_CMP_NEQ, name, IFNAMSIZ);
      objrefCounter(r.get(), kUnsteeredCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kForward, std::move(r));
    }
  }
  if (c.steer) {
    // Replies of steered flows come back by another way than the one the
    // flow left by (the CNI's, or the tunnel): they were checked as the flow
    // started, and are not checked against the reverse path again.
    auto r = newRule(c, NftNames::kForward);
    matchDirection(r.get(), true);
    matchSteered(r.get(), c.mark_mask);
    verdict(r.get(), NF_ACCEPT);
    rules.emplace_back(NftNames::kForward, std::move(r));
  }
  {
    // Anti-spoofing (strict reverse path, for forwarded traffic from pods):
    // a packet whose source is not routed back through the interface it came
    // in on is forged — a pod sending as another pod, or as a made-up
    // address. Packets from the uplink (replies from outside) are not
    // checked here; packets from the tunnel were checked on input (their
    // inner source against the node that sent them).
    auto r = newRule(c, NftNames::kForward);
    matchIifname(r.get(), c.uplink, false);
    if (c.steer && !c.tunnel.empty()) matchIifname(r.get(), c.tunnel, false);
    fib(r.get(), NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF, NFT_FIB_RESULT_OIF);
    const uint32_t none = 0;
    cmpEq(r.get(), &none, sizeof none);
    objrefCounter(r.get(), kSpoofedCounter);
    verdict(r.get(), NF_DROP);
    rules.emplace_back(NftNames::kForward, std::move(r));
  }
  for (Family f : {Family::V4, Family::V6}) {
    auto r = newRule(c, NftNames::kForward);
    matchNfproto(r.get(), f);
    // Traffic that stays inside the cluster (to pods, services) is not
    // egress: a fail-closed pod still reaches DNS and its peers.
    for (const auto& cidr : clusterOf(f)) matchCidr(r.get(), cidr, true, false);
    loadSaddr(r.get(), f);
    objrefMap(r.get(), f == Family::V4 ? NftNames::kPending4 : NftNames::kPending6);
    verdict(r.get(), NF_DROP);
    rules.emplace_back(NftNames::kForward, std::move(r));
  }
  for (Family f : {Family::V4, Family::V6}) {
    auto r = newRule(c, NftNames::kForward);
    matchNfproto(r.get(), f);
    matchOifname(r.get(), c.uplink);
    loadSaddr(r.get(), f);
    objrefMap(r.get(), f == Family::V4 ? NftNames::kTx4 : NftNames::kTx6);
    rules.emplace_back(NftNames::kForward, std::move(r));
  }
  if (c.steer) {
    if (c.uplink_dedicated) {
      // The outside world never sends with a pod's address.
      for (Family f : {Family::V4, Family::V6}) {
        const bool v4 = f == Family::V4;
        for (const char* set : {v4 ? NftNames::kSnat4 : NftNames::kSnat6,
                                v4 ? NftNames::kPending4 : NftNames::kPending6,
                                v4 ? NftNames::kSteer4 : NftNames::kSteer6}) {
          auto r = newRule(c, NftNames::kSteer);
          matchIifname(r.get(), c.uplink, true);
          matchNfproto(r.get(), f);
          loadSaddr(r.get(), f);
          lookup(r.get(), set);
          objrefCounter(r.get(), kUplinkSpoofedCounter);
          verdict(r.get(), NF_DROP);
          rules.emplace_back(NftNames::kSteer, std::move(r));
        }
        if (v4) {
          // Nor with a node's address (the tunnel trusts those).
          auto r = newRule(c, NftNames::kSteer);
          matchIifname(r.get(), c.uplink, true);
          matchNfproto(r.get(), f);
          loadSaddr(r.get(), f);
          lookup(r.get(), NftNames::kNodes4);
          objrefCounter(r.get(), kUplinkSpoofedCounter);
          verdict(r.get(), NF_DROP);
          rules.emplace_back(NftNames::kSteer, std::move(r));
        }
        for (const auto& cidr : clusterOf(f)) {
          auto r = newRule(c, NftNames::kSteer);
          matchIifname(r.get(), c.uplink, true);
          matchNfproto(r.get(), f);
          matchCidr(r.get(), cidr, false, true);
          objrefCounter(r.get(), kUplinkSpoofedCounter);
          verdict(r.get(), NF_DROP);
          rules.emplace_back(NftNames::kSteer, std::move(r));
        }
      }
    }
    if (!c.tunnel.empty())
      for (Family f : {Family::V4, Family::V6}) {
        // A flow arriving through the tunnel remembers its pod's node: at
        // its first packet, or at the first one after a takeover committed
        // its synced entry (which carries no node-local mark).
        const char* map = f == Family::V4 ? NftNames::kReturn4 : NftNames::kReturn6;
        auto r = newRule(c, NftNames::kSteer);
        matchIifname(r.get(), c.tunnel, true);
        matchNfproto(r.get(), f);
        matchDirection(r.get(), false);
        ctLoad(r.get(), NFT_CT_MARK);
        bitwiseAnd(r.get(), &c.return_flag, sizeof c.return_flag);
        const uint32_t zero = 0;
        cmpEq(r.get(), &zero, sizeof zero);
        ctMarkFromMap(r.get(), f, map);
        rules.emplace_back(NftNames::kSteer, std::move(r));
      }
    for (Family f : {Family::V4, Family::V6}) {
      const char* map = f == Family::V4 ? NftNames::kSteer4 : NftNames::kSteer6;
      auto r = newRule(c, NftNames::kSteer);
      matchNfproto(r.get(), f);
      matchNew(r.get());
      const uint32_t zero = 0;
      loadSaddr(r.get(), f);
      lookup(r.get(), map);
      for (const auto& cidr : clusterOf(f)) matchCidr(r.get(), cidr, true, false);
      fib(r.get(), NFTA_FIB_F_DADDR, NFT_FIB_RESULT_ADDRTYPE);
      const uint32_t local = RTN_LOCAL;
      cmpOp(r.get(), NFT_CMP_NEQ, &local, sizeof local);
      // Only what really came from the pod's own interface (never a packet
      // forged with a local pod's address on another interface).
      fib(r.get(), NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF, NFT_FIB_RESULT_OIF);
      cmpOp(r.get(), NFT_CMP_NEQ, &zero, sizeof zero);
      ctMarkFromMap(r.get(), f, map);
      rules.emplace_back(NftNames::kSteer, std::move(r));
    }
    {
      // Packets of flows steered out follow their flow's gateway.
      auto r = newRule(c, NftNames::kSteer);
      matchDirection(r.get(), false);
      matchSteeredOut(r.get(), c.mark_mask, c.return_flag);
      ctLoad(r.get(), NFT_CT_MARK);
      setMetaMark(r.get());
      rules.emplace_back(NftNames::kSteer, std::move(r));
    }
    if (!c.tunnel.empty()) {
      // Replies to flows that arrived through the tunnel go back through it,
      // to the node they came from (the way a gateway node's own pods get
      // their replies past strict reverse-path filtering).
      auto r = newRule(c, NftNames::kSteer);
      matchDirection(r.get(), true);
      ctLoad(r.get(), NFT_CT_MARK);
      bitwiseAnd(r.get(), &c.return_flag, sizeof c.return_flag);
      const uint32_t zero = 0;
      cmpOp(r.get(), NFT_CMP_NEQ, &zero, sizeof zero);
      ctLoad(r.get(), NFT_CT_MARK);
      bitwiseAnd(r.get(), &c.mark_mask, sizeof c.mark_mask);
      setMetaMark(r.get());
      rules.emplace_back(NftNames::kSteer, std::move(r));
    }
    // A steered flow keeps its pod's address up to the gateway: an address
    // binding to itself, before any masquerade chain (the first NAT binding
    // of a flow wins), so a CNI's masquerade never rewrites it.
    for (Family f : {Family::V4, Family::V6}) {
      auto r = newRule(c, NftNames::kPostrouting);
      matchNfproto(r.get(), f);
      matchSteeredOut(r.get(), c.mark_mask, c.return_flag);
      loadSaddr(r.get(), f);
      addExpr(r.get(), "nat", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
      });
      rules.emplace_back(NftNames::kPostrouting, std::move(r));
    }
  }
  // Attribution by port: a pod with a port block leaves from its address and
  // ports in its block (TCP and UDP; the address . port range value read
  // into four consecutive 32-bit registers). Without one, the next rule.
  for (Family f : {Family::V4, Family::V6}) {
    for (uint8_t proto : {uint8_t(IPPROTO_TCP), uint8_t(IPPROTO_UDP)}) {
      auto r = newRule(c, NftNames::kPostrouting);
      matchNfproto(r.get(), f);
      matchOifname(r.get(), c.uplink);
      matchL4(r.get(), proto);
      loadSaddr(r.get(), f);
      addExpr(r.get(), "lookup", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET,
                           f == Family::V4 ? NftNames::kBlocks4 : NftNames::kBlocks6);
      });
      const uint32_t words = f == Family::V4 ? 1 : 4;  // an address, in 32-bit registers
      addExpr(r.get(), "nat", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG32_00);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG32_00 + words);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFT_REG32_00 + words + 1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MAX, NFT_REG32_00 + 2 * words + 1);
      });
      rules.emplace_back(NftNames::kPostrouting, std::move(r));
    }
  }
  for (Family f : {Family::V4, Family::V6}) {
    auto r = newRule(c, NftNames::kPostrouting);
    matchNfproto(r.get(), f);
    matchOifname(r.get(), c.uplink);
    loadSaddr(r.get(), f);
    addExpr(r.get(), "lookup", [&](nftnl_expr* e) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
      nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_1);
      nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET,
                         f == Family::V4 ? NftNames::kSnat4 : NftNames::kSnat6);
    });
    addExpr(r.get(), "nat", [&](nftnl_expr* e) {
      nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_SNAT);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, f == Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
      nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
    });
    rules.emplace_back(NftNames::kPostrouting, std::move(r));
  }
  if (c.drop_inbound) {
    // Neighbour discovery (NS/NA) to an egress address is how the upstream
    // router checks it is reachable: accepted before the rule below.
    {
      auto r = newRule(c, NftNames::kInput);
      matchNfproto(r.get(), Family::V6);
      metaLoad(r.get(), NFT_META_L4PROTO);
      const uint8_t icmpv6 = IPPROTO_ICMPV6;
      cmpEq(r.get(), &icmpv6, sizeof icmpv6);
      addExpr(r.get(), "payload", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, 0);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, 1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
      });
      const uint8_t from = 135, to = 136;  // neighbour solicitation, advertisement
      addExpr(r.get(), "range", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_RANGE_OP, NFT_RANGE_EQ);
        nftnl_expr_set(e, NFTNL_EXPR_RANGE_FROM_DATA, &from, sizeof from);
        nftnl_expr_set(e, NFTNL_EXPR_RANGE_TO_DATA, &to, sizeof to);
      });
      verdict(r.get(), NF_ACCEPT);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
    // The egress addresses this agent owns accept replies only: a new
    // connection to one (to the node's own services) is dropped and counted.
    for (Family f : {Family::V4, Family::V6}) {
      auto r = newRule(c, NftNames::kInput);
      matchNfproto(r.get(), f);
      addExpr(r.get(), "payload", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, f == Family::V4 ? 16 : 24);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, f == Family::V4 ? 4 : 16);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
      });
      addExpr(r.get(), "lookup", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET,
                           f == Family::V4 ? NftNames::kOwned4 : NftNames::kOwned6);
      });
      addExpr(r.get(), "ct", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
      });
      const uint32_t mask = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED),
                     zero = 0;
      addExpr(r.get(), "bitwise", [&](nftnl_expr* e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, sizeof mask);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof mask);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
      });
      cmpEq(r.get(), &zero, sizeof zero);
      objrefCounter(r.get(), kInboundCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
  }
  if (c.steer && !c.tunnel.empty()) {
    // Tunnel endpoints accept only the cluster's nodes, and a node only for
    // its own pods: the inner source must be a pod of the node that sent it.
    {
      // Only by the underlay device, and only from an address routed back
      // through it (a node's address forged on another interface, the
      // uplink, is refused whatever the sysctls say).
      auto r = newRule(c, NftNames::kInput);
      matchTunnel(r.get(), c.tunnel_port);
      matchIifname(r.get(), c.underlay, false);
      objrefCounter(r.get(), kTunnelForeignCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kInput, std::move(r));
      r = newRule(c, NftNames::kInput);
      matchTunnel(r.get(), c.tunnel_port);
      fib(r.get(), NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF, NFT_FIB_RESULT_OIF);
      const uint32_t none = 0;
      cmpEq(r.get(), &none, sizeof none);
      objrefCounter(r.get(), kTunnelForeignCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
    {
      auto r = newRule(c, NftNames::kInput);
      matchTunnel(r.get(), c.tunnel_port);
      loadSaddr(r.get(), Family::V4);
      lookup(r.get(), NftNames::kNodes4, NFT_REG_1, true);
      objrefCounter(r.get(), kTunnelForeignCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
    for (Family f : {Family::V4, Family::V6}) {
      // A reply to a flow this node steered out comes back to its pod.
      auto r = newRule(c, NftNames::kInput);
      matchTunnel(r.get(), c.tunnel_port);
      payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, kInnerEthertype, 2);
      const uint16_t type = htons(f == Family::V4 ? 0x0800 : 0x86dd);
      cmpEq(r.get(), &type, sizeof type);
      payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, f == Family::V4 ? kInnerDaddr4 : kInnerDaddr6,
              f == Family::V4 ? 4 : 16);
      lookup(r.get(), f == Family::V4 ? NftNames::kSteer4 : NftNames::kSteer6);
      verdict(r.get(), NF_ACCEPT);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
    for (Family f : {Family::V4, Family::V6}) {
      auto r = newRule(c, NftNames::kInput);
      matchTunnel(r.get(), c.tunnel_port);
      payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, kInnerEthertype, 2);
      const uint16_t type = htons(f == Family::V4 ? 0x0800 : 0x86dd);
      cmpEq(r.get(), &type, sizeof type);
      payload(r.get(), NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG32_00);  // outer source
      payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, f == Family::V4 ? kInnerSaddr4 : kInnerSaddr6,
              f == Family::V4 ? 4 : 16, NFT_REG32_01);
      lookup(r.get(), f == Family::V4 ? NftNames::kPeers4 : NftNames::kPeers6, NFT_REG32_00, true);
      objrefCounter(r.get(), kSteerSpoofedCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
    {
      auto r = newRule(c, NftNames::kInput);
      matchTunnel(r.get(), c.tunnel_port);
      payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, kInnerEthertype, 2);
      const uint16_t t4 = htons(0x0800), t6 = htons(0x86dd);
      cmpOp(r.get(), NFT_CMP_NEQ, &t4, sizeof t4);
      cmpOp(r.get(), NFT_CMP_NEQ, &t6, sizeof t6);
      objrefCounter(r.get(), kSteerSpoofedCounter);
      verdict(r.get(), NF_DROP);
      rules.emplace_back(NftNames::kInput, std::move(r));
    }
  }
  return rules;
}

size_t rulesIn(const NftConfig& c, const char* chain) {
  size_t n = 0;
  for (const auto& [ch, r] : buildRules(c)) n += std::string_view(ch) == chain;
  return n;
}

}  // namespace

std::string structureFingerprint(const NftConfig& c) {
  std::string fp = "nsegress/v3 uplink=" + c.uplink + " fwd=" + std::to_string(c.forward_priority) +
                   " nat=" + std::to_string(c.nat_priority) + " in=" +
                   (c.drop_inbound ? std::to_string(c.input_priority) : std::string("off"));
  if (c.steer) {
    fp += " steer=" + std::to_string(c.steer_priority) + " mask=" + std::to_string(c.mark_mask) +
          "/" + std::to_string(c.return_flag) + " tunnel=" + c.tunnel + ":" +
          std::to_string(c.tunnel_port) + " via=" + c.underlay + " mss=" + std::to_string(c.mss4) +
          "/" + std::to_string(c.mss6) + (c.uplink_dedicated ? " dedicated" : "") + " cluster=";
    for (const auto& cidr : c.cluster) fp += cidr.str() + ",";
  }
  return fp;
}

namespace {
bool hasInput(const NftConfig& c) {
  return c.drop_inbound || (c.steer && !c.tunnel.empty());
}
}  // namespace

// ---- NftBuilder ------------------------------------------------------------

// Consecutive element ops on one set in one direction, waiting to be
// written as one message.
struct NftBuilder::Group {
  const char* set;
  bool add;
  SetPtr obj{nftnl_set_alloc()};
  std::vector<size_t> ops;
};

NftBuilder::NftBuilder(NftConfig config, uint32_t first_seq)
    : cfg_(std::move(config)), seq_(first_seq) {
  buf_.resize(1 << 16);
  nftnl_batch_begin(static_cast<char*>(reserve(kMaxMsg)), seq_++);
  len_ += NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data() + len_)->nlmsg_len);
}

NftBuilder::~NftBuilder() = default;

void* NftBuilder::reserve(size_t bytes) {
  if (buf_.size() - len_ < bytes) buf_.resize(std::max(buf_.size() * 2, len_ + bytes));
  std::memset(buf_.data() + len_, 0, bytes);
  return buf_.data() + len_;
}

void NftBuilder::commit(uint32_t seq, size_t op_index) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf_.data() + len_);
  len_ += NLMSG_ALIGN(nlh->nlmsg_len);
  msgs_.push_back(Msg{seq, {op_index}, {}});
}

void NftBuilder::createTable(size_t op_index) {
  {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, cfg_.table.c_str());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
    const std::string fp = structureFingerprint(cfg_);
    nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, fp.data(), fp.size());
    uint32_t seq = seq_++;
    auto* nlh =
        nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)), NFT_MSG_NEWTABLE, kFamily,
                              NLM_F_CREATE | NLM_F_EXCL, seq);  // never rules on top of rules
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    commit(seq, op_index);
  }
  for (const auto& spec : kSets) {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, cfg_.table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, spec.name);
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
    const bool v4 = spec.family == Family::V4;
    const uint32_t addr_type = v4 ? kTypeIpv4Addr : kTypeIpv6Addr;
    if (spec.kind == SetSpec::kPeers) {
      nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, concatType(kTypeIpv4Addr, addr_type));
      nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, v4 ? 8 : 20);
    } else {
      nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, addr_type);
      nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, v4 ? 4 : 16);
    }
    uint32_t flags = 0;
    if (spec.kind == SetSpec::kMarkMap) {
      flags |= NFT_SET_MAP;
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, kTypeMark);
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, 4);
    } else if (spec.kind == SetSpec::kMap) {
      flags |= NFT_SET_MAP;
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, v4 ? kTypeIpv4Addr : kTypeIpv6Addr);
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, v4 ? 4 : 16);
    } else if (spec.kind == SetSpec::kObjMap) {
      flags |= NFT_SET_OBJECT;
      nftnl_set_set_u32(s.get(), NFTNL_SET_OBJ_TYPE, NFT_OBJECT_COUNTER);
    } else if (spec.kind == SetSpec::kBlockMap) {
      flags |= NFT_SET_MAP;
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, concatType(addr_type, kTypeInetService));
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN,
                        static_cast<uint32_t>(blockValueLen(spec.family)));
    }
    nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(s.get(), NFTNL_SET_ID, static_cast<uint32_t>(&spec - kSets) + 1);
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)), NFT_MSG_NEWSET, kFamily,
                                      NLM_F_CREATE, seq);
    nftnl_set_nlmsg_build_payload(nlh, s.get());
    commit(seq, op_index);
  }
  struct ChainSpec {
    const char* name;
    const char* type;
    uint32_t hook;
    int prio;
  };
  // The built-in counters the rules name, before the rules.
  for (const char* name : kBuiltinCounters) {
    ObjPtr o(nftnl_obj_alloc());
    nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, cfg_.table.c_str());
    nftnl_obj_set_str(o.get(), NFTNL_OBJ_NAME, name);
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_FAMILY, kFamily);
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)), NFT_MSG_NEWOBJ, kFamily,
                                      NLM_F_CREATE, seq);
    nftnl_obj_nlmsg_build_payload(nlh, o.get());
    commit(seq, op_index);
  }
  const ChainSpec chains[] = {
      {NftNames::kForward, "filter", NF_INET_FORWARD, cfg_.forward_priority},
      {NftNames::kPostrouting, "nat", NF_INET_POST_ROUTING, cfg_.nat_priority},
      {NftNames::kInput, "filter", NF_INET_LOCAL_IN, cfg_.input_priority},
      {NftNames::kSteer, "filter", NF_INET_PRE_ROUTING, cfg_.steer_priority},
  };
  for (const auto& cs : chains) {
    if (cs.hook == NF_INET_LOCAL_IN && !hasInput(cfg_)) continue;
    if (cs.hook == NF_INET_PRE_ROUTING && !cfg_.steer) continue;
    ChainPtr ch(nftnl_chain_alloc());
    nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TABLE, cfg_.table.c_str());
    nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_NAME, cs.name);
    nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_FAMILY, kFamily);
    nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TYPE, cs.type);
    nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_HOOKNUM, cs.hook);
    nftnl_chain_set_s32(ch.get(), NFTNL_CHAIN_PRIO, cs.prio);
    nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)), NFT_MSG_NEWCHAIN,
                                      kFamily, NLM_F_CREATE, seq);
    nftnl_chain_nlmsg_build_payload(nlh, ch.get());
    commit(seq, op_index);
  }
  for (auto& [chain, rule] : buildRules(cfg_)) {
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)), NFT_MSG_NEWRULE,
                                      kFamily, NLM_F_CREATE | NLM_F_APPEND, seq);
    nftnl_rule_nlmsg_build_payload(nlh, rule.get());
    commit(seq, op_index);
  }
}

void NftBuilder::append(const NftOp& op, size_t op_index) {
  if (!setFor(op.kind, op.key.family())) flushGroup();  // not an element: keep the order
  switch (op.kind) {
    case NftOp::Kind::kCreateTable:
      createTable(op_index);
      return;
    case NftOp::Kind::kDeleteTable: {
      TablePtr t(nftnl_table_alloc());
      nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, cfg_.table.c_str());
      nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
      uint32_t seq = seq_++;
      auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)), NFT_MSG_DELTABLE,
                                        kFamily, 0, seq);
      nftnl_table_nlmsg_build_payload(nlh, t.get());
      commit(seq, op_index);
      return;
    }
    case NftOp::Kind::kAddCounter:
    case NftOp::Kind::kDelCounter: {
      ObjPtr o(nftnl_obj_alloc());
      nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, cfg_.table.c_str());
      nftnl_obj_set_str(o.get(), NFTNL_OBJ_NAME, op.counter.c_str());
      nftnl_obj_set_u32(o.get(), NFTNL_OBJ_FAMILY, kFamily);
      nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
      const bool add = op.kind == NftOp::Kind::kAddCounter;
      uint32_t seq = seq_++;
      auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve(kMaxMsg)),
                                        add ? NFT_MSG_NEWOBJ : NFT_MSG_DELOBJ, kFamily,
                                        add ? NLM_F_CREATE : 0, seq);
      nftnl_obj_nlmsg_build_payload(nlh, o.get());
      commit(seq, op_index);
      return;
    }
    default:
      break;
  }
  // Set element ops: consecutive ones on the same set and in the same
  // direction share a message.
  const char* set = setFor(op.kind, op.key.family());
  bool add = false;
  nftnl_set_elem* e = nftnl_set_elem_alloc();
  if (op.kind == NftOp::Kind::kAddPeer || op.kind == NftOp::Kind::kDelPeer) {
    uint8_t key[20];
    std::memcpy(key, op.egress.bytes(), 4);  // the node's (IPv4) underlay address
    std::memcpy(key + 4, op.key.bytes(), op.key.size());
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, 4 + op.key.size());
  } else {
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, op.key.bytes(), op.key.size());
  }
  switch (op.kind) {
    case NftOp::Kind::kAddSteer:
    case NftOp::Kind::kAddReturn:
      add = true;
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, &op.mark, sizeof op.mark);
      break;
    case NftOp::Kind::kAddPeer:
    case NftOp::Kind::kAddNode:
      add = true;
      break;
    case NftOp::Kind::kAddSnat:
    case NftOp::Kind::kAddFlushRec:
      add = true;
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, op.egress.bytes(), op.egress.size());
      break;
    case NftOp::Kind::kAddTx:
    case NftOp::Kind::kAddPending:
      add = true;
      nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_OBJREF, op.counter.c_str());
      break;
    case NftOp::Kind::kAddBlock: {
      add = true;
      uint8_t v[40];
      encodeBlockValue(v, op.egress, op.first, op.last);
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, v, blockValueLen(op.key.family()));
      break;
    }
    case NftOp::Kind::kAddOwned:
      add = true;
      break;
    default:
      break;
  }
  if (group_ &&
      (group_->set != set || group_->add != add || group_->ops.size() >= kElementsPerMessage))
    flushGroup();
  if (!group_) {
    group_ = std::make_unique<Group>();
    group_->set = set;
    group_->add = add;
    nftnl_set_set_str(group_->obj.get(), NFTNL_SET_TABLE, cfg_.table.c_str());
    nftnl_set_set_str(group_->obj.get(), NFTNL_SET_NAME, set);
    nftnl_set_set_u32(group_->obj.get(), NFTNL_SET_FAMILY, kFamily);
  }
  nftnl_set_elem_add(group_->obj.get(), e);  // the set takes ownership
  group_->ops.push_back(op_index);
}

void NftBuilder::flushGroup() {
  if (!group_) return;
  auto g = std::move(group_);
  const uint32_t seq = seq_++;
  auto* nlh = nftnl_nlmsg_build_hdr(
      static_cast<char*>(reserve(kMaxMsg + g->ops.size() * kMaxElemBytes)),
      g->add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, kFamily, g->add ? NLM_F_CREATE : 0, seq);
  nftnl_set_elems_nlmsg_build_payload(nlh, g->obj.get());
  // Where each element's attribute starts: the kernel names the element it
  // refused by that offset (extended ack).
  Msg m{seq, std::move(g->ops), {}};
  forEachAttr(nlh, sizeof(nfgenmsg), [&](const nlattr* attr) {
    if (mnl_attr_get_type(attr) != NFTA_SET_ELEM_LIST_ELEMENTS) return;
    forEachNested(attr, [&](const nlattr* elem) {
      m.offsets.push_back(static_cast<uint32_t>(reinterpret_cast<const char*>(elem) -
                                                reinterpret_cast<const char*>(nlh)));
    });
  });
  len_ += NLMSG_ALIGN(nlh->nlmsg_len);
  msgs_.push_back(std::move(m));
}

const std::vector<char>& NftBuilder::finish() {
  if (!finished_) {
    flushGroup();
    nftnl_batch_end(static_cast<char*>(reserve(kMaxMsg)), seq_++);
    len_ += NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data() + len_)->nlmsg_len);
    buf_.resize(len_);
    finished_ = true;
  }
  return buf_;
}

const NftBuilder::Msg* NftBuilder::find(uint32_t seq) const {
  // msgs_ is sorted by seq (assigned increasingly).
  auto it = std::lower_bound(msgs_.begin(), msgs_.end(), seq,
                             [](const Msg& m, uint32_t s) { return m.seq < s; });
  return it == msgs_.end() || it->seq != seq ? nullptr : &*it;
}

std::optional<size_t> NftBuilder::opFor(uint32_t seq, std::optional<uint32_t> attr_offset) const {
  const Msg* m = find(seq);
  if (!m) return std::nullopt;
  if (m->ops.size() == 1) return m->ops[0];
  if (!attr_offset) return std::nullopt;
  for (size_t i = 0; i < m->offsets.size() && i < m->ops.size(); ++i)
    if (m->offsets[i] == *attr_offset) return m->ops[i];
  return std::nullopt;
}

std::optional<std::pair<size_t, size_t>> NftBuilder::opsOf(uint32_t seq) const {
  const Msg* m = find(seq);
  if (!m) return std::nullopt;
  auto [lo, hi] = std::minmax_element(m->ops.begin(), m->ops.end());
  return std::pair{*lo, *hi};
}

std::vector<std::string> NftBuilder::renderRules(const NftConfig& config) {
  std::vector<std::string> out;
  for (auto& [chain, rule] : buildRules(config)) {
    char buf[4096];
    nftnl_rule_snprintf(buf, sizeof buf, rule.get(), NFTNL_OUTPUT_DEFAULT, 0);
    out.push_back(std::string(chain) + ": " + buf);
  }
  return out;
}

// ---- NftTable (socket side) ---------------------------------------------------

struct NftTable::Impl {
  MnlPtr sock;
  uint32_t portid = 0;
  uint32_t seq = static_cast<uint32_t>(time(nullptr));
  std::vector<char> rx = std::vector<char>(1 << 20);  // one receive buffer, reused
};

namespace {

// Sets a socket buffer size: the FORCE variant (CAP_NET_ADMIN, beyond
// rmem_max/wmem_max) first, then the plain one, as nftables' mnl.c does.
// Returns the size the kernel granted (it doubles the request).
Result<int> setBuffer(int fd, int force_opt, int opt, int bytes, const char* what) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) != 0 &&
      setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes) != 0)
    return makeError(errno, std::string("nft: ") + what + ": " + strerror(errno));
  int got = 0;
  socklen_t len = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, opt, &got, &len) != 0)
    return makeError(errno, std::string("nft: ") + what + ": " + strerror(errno));
  return got;
}

}  // namespace

Result<std::unique_ptr<NftTable>> NftTable::open(NftConfig config) {
  if (config.uplink.empty() || config.uplink.size() >= IFNAMSIZ)
    return makeError(EINVAL, "nft: uplink interface name must be 1-15 characters");
  auto impl = std::make_unique<Impl>();
  impl->sock.reset(mnl_socket_open(NETLINK_NETFILTER));
  if (!impl->sock) return makeError(errno, std::string("nft: socket: ") + strerror(errno));
  if (mnl_socket_bind(impl->sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    return makeError(errno, std::string("nft: bind: ") + strerror(errno));
  impl->portid = mnl_socket_get_portid(impl->sock.get());
  const int fd = mnl_socket_get_fd(impl->sock.get());
  // Room for the errors of a large batch and for dumps.
  if (auto r = setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, 4 << 20, "receive buffer"); !r)
    return r.error();
  // Extended acks name the element a multi-element message was refused for;
  // capped acks do not echo our (large) messages back. Older kernels lack
  // them: errors are then attributed to the message's range of ops.
  int on = 1;
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on);
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
  return std::unique_ptr<NftTable>(new NftTable(std::move(config), std::move(impl)));
}

NftTable::NftTable(NftConfig config, std::unique_ptr<Impl> impl)
    : cfg_(std::move(config)), impl_(std::move(impl)) {}

NftTable::~NftTable() = default;

namespace {

Result<IpAddress> ipFrom(const void* data, uint32_t len) {
  if (len == 4) return IpAddress::fromBytes(Family::V4, static_cast<const uint8_t*>(data));
  if (len == 16) return IpAddress::fromBytes(Family::V6, static_cast<const uint8_t*>(data));
  return makeError(EPROTO, "nft: element of unexpected length " + std::to_string(len));
}

// Reads what is left of an answer to `seq` (after an error or an interrupted
// dump) so the next request starts on a clean socket.
void drain(mnl_socket* sock, std::vector<char>& buf, uint32_t seq) {
  for (;;) {
    ssize_t n = recv(mnl_socket_get_fd(sock), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n <= 0) return;
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len))
      if (nlh->nlmsg_seq == seq &&
          (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR))
        return;
  }
}

}  // namespace

namespace {

// One GET (NLM_F_ACK for one object, NLM_F_DUMP for a dump): `payload`
// fills the request, `each` sees every reply message. A dump interrupted by
// a concurrent change (NLM_F_DUMP_INTR) is drained and started over, as
// nftables does; the socket is left clean on every error.
Status query(NftTable::Impl& impl, uint16_t type, uint16_t flags,
             const std::function<void(nlmsghdr*)>& payload,
             const std::function<void(const nlmsghdr*)>& each, const std::string& what) {
  mnl_socket* sock = impl.sock.get();
  for (int attempt = 0; attempt < 5; ++attempt) {
    char req[kMaxMsg] = {};
    const uint32_t seq = ++impl.seq;
    auto* nlh = nftnl_nlmsg_build_hdr(req, type, kFamily, flags, seq);
    payload(nlh);
    if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0)
      return makeError(errno, "nft: " + what + ": " + strerror(errno));
    struct Ctx {
      const std::function<void(const nlmsghdr*)>* each;
    } ctx{&each};
    int r;
    do {
      ssize_t n = mnl_socket_recvfrom(sock, impl.rx.data(), impl.rx.size());
      if (n < 0) {
        const int e = errno;
        drain(sock, impl.rx, seq);
        return makeError(e, "nft: " + what + ": " + strerror(e));
      }
      r = mnl_cb_run(
          impl.rx.data(), static_cast<size_t>(n), seq, impl.portid,
          [](const nlmsghdr* m, void* data) -> int {
            (*static_cast<Ctx*>(data)->each)(m);
            return MNL_CB_OK;
          },
          &ctx);
    } while (r > MNL_CB_STOP);
    if (r == MNL_CB_STOP) return okStatus();
    const int e = errno;
    drain(sock, impl.rx, seq);
    if (e != EINTR) return makeError(e, "nft: " + what + ": " + strerror(e));
  }
  return makeError(EINTR, "nft: " + what + ": the table kept changing during the dump");
}

// A typed GET over query(): `filter` says what to ask for on a fresh object
// of the kind, `each` sees every object of the answer.
template <typename T, auto Alloc, auto Free, auto Build, auto Parse>
struct Kind {
  using Ptr = Handle<T, Free>;
  static Status get(NftTable::Impl& impl, uint16_t type, uint16_t flags,
                    const std::function<void(T*)>& filter, const std::function<void(T*)>& each,
                    const std::string& what) {
    return query(
        impl, type, flags,
        [&](nlmsghdr* nlh) {
          Ptr req(Alloc());
          filter(req.get());
          Build(nlh, req.get());
        },
        [&](const nlmsghdr* m) {
          Ptr got(Alloc());
          if (Parse(m, got.get()) >= 0) each(got.get());
        },
        what);
  }
};
using TableKind = Kind<nftnl_table, nftnl_table_alloc, nftnl_table_free,
                       nftnl_table_nlmsg_build_payload, nftnl_table_nlmsg_parse>;
using SetKind = Kind<nftnl_set, nftnl_set_alloc, nftnl_set_free, nftnl_set_nlmsg_build_payload,
                     nftnl_set_nlmsg_parse>;
using ElemsKind = Kind<nftnl_set, nftnl_set_alloc, nftnl_set_free,
                       nftnl_set_elems_nlmsg_build_payload, nftnl_set_elems_nlmsg_parse>;
using RuleKind = Kind<nftnl_rule, nftnl_rule_alloc, nftnl_rule_free, nftnl_rule_nlmsg_build_payload,
                      nftnl_rule_nlmsg_parse>;
using ObjKind = Kind<nftnl_obj, nftnl_obj_alloc, nftnl_obj_free, nftnl_obj_nlmsg_build_payload,
                     nftnl_obj_nlmsg_parse>;

// The elements of one of our sets, into `obs`. Collected apart first, so an
// interrupted (retried) dump starts from nothing.
Status readElements(NftTable::Impl& impl, const char* table, const SetSpec& spec,
                    gateway::ObservedNft& obs) {
  std::vector<std::pair<IpAddress, IpAddress>> addrs;
  std::vector<std::pair<IpAddress, std::string>> counters;
  std::vector<IpAddress> keys;
  std::optional<Error> bad;
  std::vector<std::pair<IpAddress, uint32_t>> marks;
  std::vector<std::pair<IpAddress, IpAddress>> peers;  // (node, pod)
  std::vector<std::pair<IpAddress, gateway::BlockValue>> blocks;
  std::function<void(nftnl_set_elem*)> element = [&](nftnl_set_elem* e) {
    uint32_t klen = 0;
    const void* k = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &klen);
    if (spec.kind == SetSpec::kPeers) {
      if (klen < 8) return void(bad = makeError(EPROTO, "nft: short peer element"));
      auto node = ipFrom(k, 4);
      auto pod = ipFrom(static_cast<const uint8_t*>(k) + 4, klen - 4);
      if (!node) return void(bad = node.error());
      if (!pod) return void(bad = pod.error());
      return void(peers.emplace_back(*node, *pod));
    }
    auto key = ipFrom(k, klen);
    if (!key) return void(bad = key.error());
    if (spec.kind == SetSpec::kMarkMap) {
      uint32_t dlen = 0;
      const void* d = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dlen);
      if (dlen != 4) return void(bad = makeError(EPROTO, "nft: mark of unexpected length"));
      uint32_t m;
      std::memcpy(&m, d, 4);
      marks.emplace_back(*key, m);
    } else if (spec.kind == SetSpec::kMap) {
      uint32_t dlen = 0;
      const void* d = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dlen);
      auto val = ipFrom(d, dlen);
      if (!val) return void(bad = val.error());
      addrs.emplace_back(*key, *val);
    } else if (spec.kind == SetSpec::kBlockMap) {
      uint32_t dlen = 0;
      const auto* d =
          static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dlen));
      const size_t a = key->size();
      if (!d || dlen != 2 * (a + 4))
        return void(bad = makeError(EPROTO, "nft: port block of unexpected length"));
      auto egress = ipFrom(d, a);
      auto egress2 = ipFrom(d + a + 4, a);
      if (!egress) return void(bad = egress.error());
      uint16_t first, last;
      std::memcpy(&first, d + a, 2);
      std::memcpy(&last, d + 2 * a + 4, 2);
      gateway::BlockValue v{*egress, ntohs(first), ntohs(last)};
      if (!egress2 || *egress2 != *egress || !v.first || v.first > v.last)
        return void(bad = makeError(EPROTO, "nft: port block " + key->str() + " is malformed"));
      blocks.emplace_back(*key, v);
    } else if (spec.kind == SetSpec::kObjMap) {
      const char* c = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_OBJREF);
      counters.emplace_back(*key, c ? c : "");
    } else {
      keys.push_back(*key);
    }
  };
  auto st = ElemsKind::get(
      impl, NFT_MSG_GETSETELEM, NLM_F_DUMP,
      [&](nftnl_set* s) {
        addrs.clear(), counters.clear(), keys.clear(), marks.clear(), peers.clear(), blocks.clear(),
            bad.reset();
        nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
        nftnl_set_set_str(s, NFTNL_SET_NAME, spec.name);
        nftnl_set_set_u32(s, NFTNL_SET_FAMILY, kFamily);
      },
      [&](nftnl_set* s) {
        nftnl_set_elem_foreach(
            s,
            [](nftnl_set_elem* e, void* data) -> int {
              (*static_cast<std::function<void(nftnl_set_elem*)>*>(data))(e);
              return 0;
            },
            &element);
      },
      std::string("list elements of ") + spec.name);
  if (!st) return st;
  if (bad) return *bad;
  const std::string_view name = spec.name;
  auto& into = name.starts_with("snat") ? obs.snat : obs.flush_pending;
  for (auto& [k, v] : addrs) into[k] = v;
  for (auto& [k, c] : counters)
    (name.starts_with("tx") ? obs.tx_counter : obs.pending)[k] = std::move(c);
  (name == NftNames::kNodes4 ? obs.nodes : obs.owned).insert(keys.begin(), keys.end());
  for (auto& [k, m] : marks) (name.starts_with("steer") ? obs.steer : obs.returns)[k] = m;
  obs.peers.insert(peers.begin(), peers.end());
  for (auto& [k, v] : blocks) obs.blocks[k] = v;
  return okStatus();
}

}  // namespace

Result<gateway::ObservedNft> NftTable::observe() {
  gateway::ObservedNft obs;
  Impl& impl = *impl_;
  const char* table = cfg_.table.c_str();
  auto ours = [&](const char* t) { return t && cfg_.table == t; };

  std::string fingerprint;
  auto st = TableKind::get(
      impl, NFT_MSG_GETTABLE, NLM_F_ACK,
      [&](nftnl_table* t) { nftnl_table_set_str(t, NFTNL_TABLE_NAME, table); },
      [&](nftnl_table* t) {
        obs.table_present = true;
        uint32_t len = 0;
        if (nftnl_table_is_set(t, NFTNL_TABLE_USERDATA)) {
          const void* ud = nftnl_table_get_data(t, NFTNL_TABLE_USERDATA, &len);  // sets len
          fingerprint.assign(static_cast<const char*>(ud), len);
        }
      },
      "get table");
  if (!st && st.error().code == ENOENT) return obs;  // no table: nothing observed
  if (!st) return st.error();

  std::set<std::string> sets;
  st = SetKind::get(
      impl, NFT_MSG_GETSET, NLM_F_DUMP,
      [&](nftnl_set* s) { nftnl_set_set_str(s, NFTNL_SET_TABLE, table); },
      [&](nftnl_set* s) {
        if (ours(nftnl_set_get_str(s, NFTNL_SET_TABLE)))
          sets.insert(nftnl_set_get_str(s, NFTNL_SET_NAME));
      },
      "list sets");
  if (!st) return st.error();
  std::map<std::string, size_t> rules;
  st = RuleKind::get(
      impl, NFT_MSG_GETRULE, NLM_F_DUMP,
      [&](nftnl_rule* r) { nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table); },
      [&](nftnl_rule* r) {
        if (ours(nftnl_rule_get_str(r, NFTNL_RULE_TABLE)))
          rules[nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)]++;
      },
      "list rules");
  if (!st) return st.error();
  const bool all_sets =
      std::all_of(std::begin(kSets), std::end(kSets), [&](auto& s) { return sets.count(s.name); });
  obs.structure_ok = fingerprint == structureFingerprint(cfg_) && all_sets &&
                     rules[NftNames::kForward] == rulesIn(cfg_, NftNames::kForward) &&
                     rules[NftNames::kPostrouting] == rulesIn(cfg_, NftNames::kPostrouting) &&
                     rules[NftNames::kInput] == rulesIn(cfg_, NftNames::kInput) &&
                     rules[NftNames::kSteer] == rulesIn(cfg_, NftNames::kSteer);

  for (const auto& spec : kSets)
    if (sets.count(spec.name))
      if (auto r = readElements(impl, table, spec, obs); !r) return r.error();

  st = ObjKind::get(
      impl, NFT_MSG_GETOBJ, NLM_F_DUMP,
      [&](nftnl_obj* o) {
        obs.counters.clear();
        nftnl_obj_set_str(o, NFTNL_OBJ_TABLE, table);
        nftnl_obj_set_u32(o, NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
      },
      [&](nftnl_obj* o) {
        if (!ours(nftnl_obj_get_str(o, NFTNL_OBJ_TABLE))) return;
        if (nftnl_obj_get_u32(o, NFTNL_OBJ_TYPE) != NFT_OBJECT_COUNTER) return;
        obs.counters[nftnl_obj_get_str(o, NFTNL_OBJ_NAME)] = {
            nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS), nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES)};
      },
      "list counters");
  if (!st) return st.error();
  return obs;
}

namespace {

// What a kernel error carries besides its code, with extended acks.
struct ErrorDetail {
  std::optional<uint32_t> offset;  // NLMSGERR_ATTR_OFFS: the attribute refused
  std::string message;             // NLMSGERR_ATTR_MSG
};

ErrorDetail errorDetail(const nlmsghdr* nlh) {
  ErrorDetail d;
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return d;
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  // Capped: the error echoes only the header of our message, then the TLVs.
  size_t off = sizeof(nlmsgerr);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) off += err->msg.nlmsg_len - sizeof(nlmsghdr);
  forEachAttr(nlh, off, [&](const nlattr* attr) {
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_OFFS &&
        mnl_attr_get_payload_len(attr) >= sizeof(uint32_t))
      d.offset = mnl_attr_get_u32(attr);
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_get_payload_len(attr) > 0)
      d.message.assign(mnl_attr_get_str(attr),
                       strnlen(mnl_attr_get_str(attr), mnl_attr_get_payload_len(attr)));
  });
  return d;
}

}  // namespace

Status NftTable::apply(const std::vector<NftOp>& ops) {
  if (ops.empty()) return okStatus();
  NftBuilder b(cfg_, impl_->seq + 1);
  for (size_t i = 0; i < ops.size(); ++i) b.append(ops[i], i);
  const auto& bytes = b.finish();
  impl_->seq = b.nextSeq();
  last_messages_ = b.messages();

  const int fd = mnl_socket_get_fd(impl_->sock.get());
  // The whole batch goes in one sendmsg (one transaction), so the socket
  // must accept it at once.
  const int want = static_cast<int>(std::min<size_t>(bytes.size() + (1 << 16), 1u << 30));
  auto granted = setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, want, "send buffer");
  if (!granted) return granted.error();
  if (static_cast<size_t>(*granted) < bytes.size())
    return makeError(EMSGSIZE, "nft: a batch of " + std::to_string(bytes.size()) +
                                   " bytes exceeds the send buffer the kernel allows (" +
                                   std::to_string(*granted) +
                                   " bytes; needs CAP_NET_ADMIN or a larger wmem_max)");
  if (mnl_socket_sendto(impl_->sock.get(), bytes.data(), bytes.size()) < 0)
    return makeError(errno, std::string("nft: send batch: ") + strerror(errno));

  // The kernel processes a batch synchronously inside sendmsg and only
  // answers messages that failed (we send no ACK requests), so whatever is
  // queued now is the complete list of errors.
  std::optional<Error> first;
  size_t failures = 0;
  for (;;) {
    ssize_t n = recv(fd, impl_->rx.data(), impl_->rx.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        if (!first) first = makeError(ENOBUFS, "nft: too many errors to read; batch aborted");
        ++failures;
        continue;
      }
      return makeError(errno, std::string("nft: read errors: ") + strerror(errno));
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(impl_->rx.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(nlh));
      if (err->error == 0) continue;
      ++failures;
      if (first) continue;
      const int code = -err->error;
      const auto detail = errorDetail(nlh);
      std::string what;
      if (auto idx = b.opFor(nlh->nlmsg_seq, detail.offset)) {
        what = "op " + std::to_string(*idx) + " (" + ops[*idx].describe() + ")";
      } else if (auto range = b.opsOf(nlh->nlmsg_seq)) {
        what = "one of ops " + std::to_string(range->first) + "-" + std::to_string(range->second) +
               " (" + ops[range->first].describe() + " ...)";
      } else {
        what = "message seq " + std::to_string(nlh->nlmsg_seq);
      }
      first = makeError(code, "nft: kernel refused " + what + ": " + strerror(code) +
                                  (detail.message.empty() ? "" : " (" + detail.message + ")"));
    }
  }
  if (first) {
    if (failures > 1) first->message += " (+" + std::to_string(failures - 1) + " more errors)";
    first->message += "; transaction aborted, nothing changed";
    return *first;
  }
  return okStatus();
}

Status NftTable::destroy() {
  auto r = apply({NftOp{NftOp::Kind::kDeleteTable, "", {}, {}, {}}});
  if (!r && r.error().code == ENOENT) return okStatus();
  return r;
}

}  // namespace nsegress::netlink
