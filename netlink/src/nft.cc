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
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>

namespace nsegress::netlink {

using gateway::NftOp;

namespace {

// ---- RAII for libnftnl objects ---------------------------------------------
struct TableDel {
  void operator()(nftnl_table* p) const { nftnl_table_free(p); }
};
struct ChainDel {
  void operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
};
struct RuleDel {
  void operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
};
struct SetDel {
  void operator()(nftnl_set* p) const { nftnl_set_free(p); }
};
struct ObjDel {
  void operator()(nftnl_obj* p) const { nftnl_obj_free(p); }
};
struct MnlDel {
  void operator()(mnl_socket* p) const { mnl_socket_close(p); }
};
using TablePtr = std::unique_ptr<nftnl_table, TableDel>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDel>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleDel>;
using SetPtr = std::unique_ptr<nftnl_set, SetDel>;
using ObjPtr = std::unique_ptr<nftnl_obj, ObjDel>;
using MnlPtr = std::unique_ptr<mnl_socket, MnlDel>;

constexpr uint16_t kFamily = NFPROTO_INET;
constexpr uint32_t kTypeIpv4Addr = 7;  // nft datatype ids, so `nft list` prints addresses
constexpr uint32_t kTypeIpv6Addr = 8;
constexpr size_t kMaxMsg = 8192;

struct SetSpec {
  const char* name;
  Family family;
  enum { kPlain, kMap, kObjMap } kind;
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
};

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
    default:
      return nullptr;
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

// The whole rule set. Per packet: one map lookup per hook, whatever the number
// of namespaces.
//   forward:     meta nfproto ipv4 counter name ip saddr map @pending4 drop
//                meta nfproto ipv6 counter name ip6 saddr map @pending6 drop
//                meta nfproto ipv4 oifname UPLINK counter name ip saddr map @tx4
//                meta nfproto ipv6 oifname UPLINK counter name ip6 saddr map @tx6
//   postrouting: meta nfproto ipv4 oifname UPLINK snat ip to ip saddr map @snat4
//                meta nfproto ipv6 oifname UPLINK snat ip6 to ip6 saddr map @snat6
std::vector<std::pair<const char*, RulePtr>> buildRules(const NftConfig& c) {
  std::vector<std::pair<const char*, RulePtr>> rules;
  for (Family f : {Family::V4, Family::V6}) {
    auto r = newRule(c, NftNames::kForward);
    matchNfproto(r.get(), f);
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
  return rules;
}

constexpr size_t kRulesInForward = 4;
constexpr size_t kRulesInPostrouting = 2;

}  // namespace

std::string structureFingerprint(const NftConfig& c) {
  return "nsegress/v1 uplink=" + c.uplink + " fwd=" + std::to_string(c.forward_priority) +
         " nat=" + std::to_string(c.nat_priority);
}

// ---- NftBuilder ------------------------------------------------------------

NftBuilder::NftBuilder(NftConfig config, uint32_t first_seq)
    : cfg_(std::move(config)), first_seq_(first_seq), seq_(first_seq) {
  buf_.resize(1 << 16);
  nftnl_batch_begin(static_cast<char*>(reserve()), seq_++);
  len_ += NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data() + len_)->nlmsg_len);
}

NftBuilder::~NftBuilder() = default;

void* NftBuilder::reserve() {
  if (buf_.size() - len_ < kMaxMsg) buf_.resize(std::max(buf_.size() * 2, len_ + kMaxMsg));
  std::memset(buf_.data() + len_, 0, kMaxMsg);
  return buf_.data() + len_;
}

void NftBuilder::commit(uint32_t seq, size_t op_index) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf_.data() + len_);
  len_ += NLMSG_ALIGN(nlh->nlmsg_len);
  seq_to_op_.emplace_back(seq, op_index);
}

void NftBuilder::createTable(size_t op_index) {
  {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, cfg_.table.c_str());
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
    const std::string fp = structureFingerprint(cfg_);
    nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, fp.data(), fp.size());
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()), NFT_MSG_NEWTABLE, kFamily,
                                      NLM_F_CREATE, seq);
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    commit(seq, op_index);
  }
  for (const auto& spec : kSets) {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, cfg_.table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, spec.name);
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
    const bool v4 = spec.family == Family::V4;
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, v4 ? kTypeIpv4Addr : kTypeIpv6Addr);
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, v4 ? 4 : 16);
    uint32_t flags = 0;
    if (spec.kind == SetSpec::kMap) {
      flags |= NFT_SET_MAP;
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, v4 ? kTypeIpv4Addr : kTypeIpv6Addr);
      nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, v4 ? 4 : 16);
    } else if (spec.kind == SetSpec::kObjMap) {
      flags |= NFT_SET_OBJECT;
      nftnl_set_set_u32(s.get(), NFTNL_SET_OBJ_TYPE, NFT_OBJECT_COUNTER);
    }
    nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(s.get(), NFTNL_SET_ID, static_cast<uint32_t>(&spec - kSets) + 1);
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()), NFT_MSG_NEWSET, kFamily,
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
  const ChainSpec chains[] = {
      {NftNames::kForward, "filter", NF_INET_FORWARD, cfg_.forward_priority},
      {NftNames::kPostrouting, "nat", NF_INET_POST_ROUTING, cfg_.nat_priority},
  };
  for (const auto& cs : chains) {
    ChainPtr ch(nftnl_chain_alloc());
    nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TABLE, cfg_.table.c_str());
    nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_NAME, cs.name);
    nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_FAMILY, kFamily);
    nftnl_chain_set_str(ch.get(), NFTNL_CHAIN_TYPE, cs.type);
    nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_HOOKNUM, cs.hook);
    nftnl_chain_set_s32(ch.get(), NFTNL_CHAIN_PRIO, cs.prio);
    nftnl_chain_set_u32(ch.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()), NFT_MSG_NEWCHAIN, kFamily,
                                      NLM_F_CREATE, seq);
    nftnl_chain_nlmsg_build_payload(nlh, ch.get());
    commit(seq, op_index);
  }
  for (auto& [chain, rule] : buildRules(cfg_)) {
    uint32_t seq = seq_++;
    auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()), NFT_MSG_NEWRULE, kFamily,
                                      NLM_F_CREATE | NLM_F_APPEND, seq);
    nftnl_rule_nlmsg_build_payload(nlh, rule.get());
    commit(seq, op_index);
  }
}

void NftBuilder::append(const NftOp& op, size_t op_index) {
  switch (op.kind) {
    case NftOp::Kind::kCreateTable:
      createTable(op_index);
      return;
    case NftOp::Kind::kDeleteTable: {
      TablePtr t(nftnl_table_alloc());
      nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, cfg_.table.c_str());
      nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
      uint32_t seq = seq_++;
      auto* nlh =
          nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()), NFT_MSG_DELTABLE, kFamily, 0, seq);
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
      auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()),
                                        add ? NFT_MSG_NEWOBJ : NFT_MSG_DELOBJ, kFamily,
                                        add ? NLM_F_CREATE : 0, seq);
      nftnl_obj_nlmsg_build_payload(nlh, o.get());
      commit(seq, op_index);
      return;
    }
    default:
      break;
  }
  // Set element ops: one element per message so errors map to exactly one op.
  const char* set = setFor(op.kind, op.key.family());
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, cfg_.table.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  nftnl_set_elem* e = nftnl_set_elem_alloc();
  nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, op.key.bytes(), op.key.size());
  bool add = false;
  switch (op.kind) {
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
    case NftOp::Kind::kAddOwned:
      add = true;
      break;
    default:
      break;
  }
  nftnl_set_elem_add(s.get(), e);  // set takes ownership
  uint32_t seq = seq_++;
  auto* nlh = nftnl_nlmsg_build_hdr(static_cast<char*>(reserve()),
                                    add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, kFamily,
                                    add ? NLM_F_CREATE : 0, seq);
  nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
  commit(seq, op_index);
}

const std::vector<char>& NftBuilder::finish() {
  if (!finished_) {
    nftnl_batch_end(static_cast<char*>(reserve()), seq_++);
    len_ += NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data() + len_)->nlmsg_len);
    buf_.resize(len_);
    finished_ = true;
  }
  return buf_;
}

std::optional<size_t> NftBuilder::opForSeq(uint32_t seq) const {
  // seq_to_op_ is sorted by seq (assigned increasingly).
  auto it = std::lower_bound(seq_to_op_.begin(), seq_to_op_.end(), std::make_pair(seq, size_t{0}),
                             [](const auto& a, const auto& b) { return a.first < b.first; });
  if (it == seq_to_op_.end() || it->first != seq) return std::nullopt;
  return it->second;
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
};

Result<std::unique_ptr<NftTable>> NftTable::open(NftConfig config) {
  if (config.uplink.empty() || config.uplink.size() >= IFNAMSIZ)
    return makeError(EINVAL, "nft: uplink interface name must be 1-15 characters");
  auto impl = std::make_unique<Impl>();
  impl->sock.reset(mnl_socket_open(NETLINK_NETFILTER));
  if (!impl->sock) return makeError(errno, std::string("nft: socket: ") + strerror(errno));
  if (mnl_socket_bind(impl->sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    return makeError(errno, std::string("nft: bind: ") + strerror(errno));
  impl->portid = mnl_socket_get_portid(impl->sock.get());
  int rcv = 4 << 20;
  setsockopt(mnl_socket_get_fd(impl->sock.get()), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  return std::unique_ptr<NftTable>(new NftTable(std::move(config), std::move(impl)));
}

NftTable::NftTable(NftConfig config, std::unique_ptr<Impl> impl)
    : cfg_(std::move(config)), impl_(std::move(impl)), seq_(static_cast<uint32_t>(time(nullptr))) {}

NftTable::~NftTable() = default;

namespace {

// Sends one request and runs `cb` on each reply message until the dump ends.
// Returns 0 or a negative errno.
int talk(mnl_socket* sock, uint32_t portid, const nlmsghdr* req, uint32_t seq,
         const std::function<void(const nlmsghdr*)>& cb) {
  if (mnl_socket_sendto(sock, req, req->nlmsg_len) < 0) return -errno;
  std::vector<char> buf(1 << 20);
  struct Ctx {
    const std::function<void(const nlmsghdr*)>* cb;
  } ctx{&cb};
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
    if (n < 0) return -errno;
    int r = mnl_cb_run(
        buf.data(), static_cast<size_t>(n), seq, portid,
        [](const nlmsghdr* nlh, void* data) -> int {
          (*static_cast<Ctx*>(data)->cb)(nlh);
          return MNL_CB_OK;
        },
        &ctx);
    if (r < 0) return -errno;
    if (r == MNL_CB_STOP) return 0;
  }
}

Result<IpAddress> ipFrom(const void* data, uint32_t len) {
  if (len == 4) return IpAddress::fromBytes(Family::V4, static_cast<const uint8_t*>(data));
  if (len == 16) return IpAddress::fromBytes(Family::V6, static_cast<const uint8_t*>(data));
  return makeError(EPROTO, "nft: element of unexpected length " + std::to_string(len));
}

}  // namespace

Result<gateway::ObservedNft> NftTable::observe() {
  gateway::ObservedNft obs;
  mnl_socket* sock = impl_->sock.get();
  std::vector<char> req(kMaxMsg);

  // Table and its fingerprint.
  std::string fingerprint;
  {
    TablePtr t(nftnl_table_alloc());
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, cfg_.table.c_str());
    uint32_t seq = ++seq_;
    std::memset(req.data(), 0, req.size());
    auto* nlh = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETTABLE, kFamily, NLM_F_ACK, seq);
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    int r = talk(sock, impl_->portid, nlh, seq, [&](const nlmsghdr* m) {
      TablePtr got(nftnl_table_alloc());
      if (nftnl_table_nlmsg_parse(m, got.get()) < 0) return;
      obs.table_present = true;
      uint32_t len = 0;
      if (nftnl_table_is_set(got.get(), NFTNL_TABLE_USERDATA)) {
        const void* ud = nftnl_table_get_data(got.get(), NFTNL_TABLE_USERDATA, &len);
        fingerprint.assign(static_cast<const char*>(ud), len);
      }
    });
    if (r == -ENOENT) return obs;  // no table: nothing observed
    if (r < 0) return makeError(-r, std::string("nft: get table: ") + strerror(-r));
  }

  // Structure: sets, chains, rule counts.
  std::set<std::string> sets;
  {
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, cfg_.table.c_str());
    uint32_t seq = ++seq_;
    std::memset(req.data(), 0, req.size());
    auto* nlh = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETSET, kFamily, NLM_F_DUMP, seq);
    nftnl_set_nlmsg_build_payload(nlh, s.get());
    int r = talk(sock, impl_->portid, nlh, seq, [&](const nlmsghdr* m) {
      SetPtr got(nftnl_set_alloc());
      if (nftnl_set_nlmsg_parse(m, got.get()) < 0) return;
      const char* table = nftnl_set_get_str(got.get(), NFTNL_SET_TABLE);
      if (table && cfg_.table == table) sets.insert(nftnl_set_get_str(got.get(), NFTNL_SET_NAME));
    });
    if (r < 0) return makeError(-r, std::string("nft: list sets: ") + strerror(-r));
  }
  std::map<std::string, size_t> rules_per_chain;
  {
    RulePtr rl(nftnl_rule_alloc());
    nftnl_rule_set_str(rl.get(), NFTNL_RULE_TABLE, cfg_.table.c_str());
    uint32_t seq = ++seq_;
    std::memset(req.data(), 0, req.size());
    auto* nlh = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETRULE, kFamily, NLM_F_DUMP, seq);
    nftnl_rule_nlmsg_build_payload(nlh, rl.get());
    int r = talk(sock, impl_->portid, nlh, seq, [&](const nlmsghdr* m) {
      RulePtr got(nftnl_rule_alloc());
      if (nftnl_rule_nlmsg_parse(m, got.get()) < 0) return;
      const char* table = nftnl_rule_get_str(got.get(), NFTNL_RULE_TABLE);
      if (table && cfg_.table == table)
        rules_per_chain[nftnl_rule_get_str(got.get(), NFTNL_RULE_CHAIN)]++;
    });
    if (r < 0) return makeError(-r, std::string("nft: list rules: ") + strerror(-r));
  }
  bool all_sets = true;
  for (const auto& spec : kSets) all_sets = all_sets && sets.count(spec.name);
  obs.structure_ok = fingerprint == structureFingerprint(cfg_) && all_sets &&
                     rules_per_chain[NftNames::kForward] == kRulesInForward &&
                     rules_per_chain[NftNames::kPostrouting] == kRulesInPostrouting;

  // Elements of every set that exists.
  for (const auto& spec : kSets) {
    if (!sets.count(spec.name)) continue;
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, cfg_.table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, spec.name);
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
    uint32_t seq = ++seq_;
    std::memset(req.data(), 0, req.size());
    auto* nlh = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETSETELEM, kFamily, NLM_F_DUMP, seq);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    std::optional<Error> bad;
    int r = talk(sock, impl_->portid, nlh, seq, [&](const nlmsghdr* m) {
      SetPtr got(nftnl_set_alloc());
      if (nftnl_set_elems_nlmsg_parse(m, got.get()) < 0) return;
      std::function<void(nftnl_set_elem*)> each = [&](nftnl_set_elem* e) {
        uint32_t klen = 0;
        const void* k = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &klen);
        auto key = ipFrom(k, klen);
        if (!key) {
          bad = key.error();
          return;
        }
        std::string_view name = spec.name;
        if (name.starts_with("snat") || name.starts_with("flush")) {
          uint32_t dlen = 0;
          const void* d = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &dlen);
          auto val = ipFrom(d, dlen);
          if (!val) {
            bad = val.error();
            return;
          }
          (name.starts_with("snat") ? obs.snat : obs.flush_pending)[*key] = *val;
        } else if (name.starts_with("tx")) {
          obs.tx_counter[*key] = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_OBJREF);
        } else if (name.starts_with("pending")) {
          obs.pending[*key] = nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_OBJREF);
        } else {
          obs.owned.insert(*key);
        }
      };
      nftnl_set_elem_foreach(
          got.get(),
          [](nftnl_set_elem* e, void* data) -> int {
            (*static_cast<std::function<void(nftnl_set_elem*)>*>(data))(e);
            return 0;
          },
          &each);
    });
    if (r < 0)
      return makeError(-r, std::string("nft: list elements of ") + spec.name + ": " + strerror(-r));
    if (bad) return *bad;
  }

  // Counters.
  {
    ObjPtr o(nftnl_obj_alloc());
    nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, cfg_.table.c_str());
    nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
    uint32_t seq = ++seq_;
    std::memset(req.data(), 0, req.size());
    auto* nlh = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETOBJ, kFamily, NLM_F_DUMP, seq);
    nftnl_obj_nlmsg_build_payload(nlh, o.get());
    int r = talk(sock, impl_->portid, nlh, seq, [&](const nlmsghdr* m) {
      ObjPtr got(nftnl_obj_alloc());
      if (nftnl_obj_nlmsg_parse(m, got.get()) < 0) return;
      const char* table = nftnl_obj_get_str(got.get(), NFTNL_OBJ_TABLE);
      if (!table || cfg_.table != table) return;
      if (nftnl_obj_get_u32(got.get(), NFTNL_OBJ_TYPE) != NFT_OBJECT_COUNTER) return;
      obs.counters[nftnl_obj_get_str(got.get(), NFTNL_OBJ_NAME)] = {
          nftnl_obj_get_u64(got.get(), NFTNL_OBJ_CTR_PKTS),
          nftnl_obj_get_u64(got.get(), NFTNL_OBJ_CTR_BYTES)};
    });
    if (r < 0) return makeError(-r, std::string("nft: list counters: ") + strerror(-r));
  }
  return obs;
}

Status NftTable::apply(const std::vector<NftOp>& ops) {
  if (ops.empty()) return okStatus();
  NftBuilder b(cfg_, seq_ + 1);
  for (size_t i = 0; i < ops.size(); ++i) b.append(ops[i], i);
  const auto& bytes = b.finish();
  seq_ = b.nextSeq();
  last_messages_ = b.messages();

  int fd = mnl_socket_get_fd(impl_->sock.get());
  // The whole batch goes in one sendmsg, so the socket must accept it at once.
  int snd = static_cast<int>(std::min<size_t>(bytes.size() + (1 << 16), 1u << 30));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd);
  if (mnl_socket_sendto(impl_->sock.get(), bytes.data(), bytes.size()) < 0)
    return makeError(errno, std::string("nft: send batch: ") + strerror(errno));

  // The kernel processes a batch synchronously inside sendmsg and only
  // answers messages that failed (we send no ACK requests), so whatever is
  // queued now is the complete list of errors.
  std::vector<char> buf(1 << 16);
  std::optional<Error> first;
  size_t failures = 0;
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {
        if (!first) first = makeError(ENOBUFS, "nft: too many errors to read; batch aborted");
        ++failures;
        continue;
      }
      return makeError(errno, std::string("nft: read errors: ") + strerror(errno));
    }
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nlh, n);
         nlh = NLMSG_NEXT(nlh, n)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(nlh));
      if (err->error == 0) continue;
      ++failures;
      if (first) continue;
      const int code = -err->error;
      auto idx = b.opForSeq(nlh->nlmsg_seq);
      std::string what = idx ? "op " + std::to_string(*idx) + " (" + ops[*idx].describe() + ")"
                             : "message seq " + std::to_string(nlh->nlmsg_seq);
      first = makeError(code, "nft: kernel refused " + what + ": " + strerror(code));
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
  NftBuilder b(cfg_, seq_ + 1);
  b.append(NftOp{NftOp::Kind::kDeleteTable, "", {}, {}, {}}, 0);
  const auto& bytes = b.finish();
  seq_ = b.nextSeq();
  if (mnl_socket_sendto(impl_->sock.get(), bytes.data(), bytes.size()) < 0)
    return makeError(errno, std::string("nft: send: ") + strerror(errno));
  std::vector<char> buf(1 << 14);
  ssize_t n = recv(mnl_socket_get_fd(impl_->sock.get()), buf.data(), buf.size(), MSG_DONTWAIT);
  if (n > 0) {
    auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data());
    if (nlh->nlmsg_type == NLMSG_ERROR) {
      int code = -static_cast<nlmsgerr*>(NLMSG_DATA(nlh))->error;
      if (code != 0 && code != ENOENT)
        return makeError(code, std::string("nft: delete table: ") + strerror(code));
    }
  }
  return okStatus();
}

}  // namespace nsegress::netlink
