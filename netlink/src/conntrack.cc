#include "nsegress/netlink/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <tuple>
#include <vector>

#include "ct_util.h"
#include "nsegress/common/fd.h"

namespace nsegress::netlink {

using ct::CtPtr;
using ct::dumpSnat;
using ct::HandlePtr;
using ct::origSrc;
using ct::replyDst;

struct Conntrack::Impl {
  HandlePtr dump;
  HandlePtr del;
};

Result<std::unique_ptr<Conntrack>> Conntrack::open() {
  auto impl = std::make_unique<Impl>();
  impl->dump.reset(nfct_open(CONNTRACK, 0));
  impl->del.reset(nfct_open(CONNTRACK, 0));
  if (!impl->dump || !impl->del)
    return makeError(errno, std::string("conntrack: open: ") + strerror(errno));
  return std::unique_ptr<Conntrack>(new Conntrack(std::move(impl)));
}

Conntrack::Conntrack(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Conntrack::~Conntrack() = default;

Result<size_t> Conntrack::flush(const gateway::ConntrackFlush& f) {
  const std::set<IpAddress> sources(f.sources.begin(), f.sources.end());
  std::vector<CtPtr> victims;
  auto st = dumpSnat(impl_->dump.get(), f.egress.isV4() ? AF_INET : AF_INET6,
                     [&](const nf_conntrack* ct) {
                       auto rd = replyDst(ct);
                       if (!rd || *rd != f.egress) return;
                       if (!sources.empty()) {
                         auto os = origSrc(ct);
                         if (!os || !sources.count(*os)) return;
                       }
                       victims.emplace_back(nfct_clone(ct));
                     });
  if (!st) return st.error();
  size_t deleted = 0;
  for (const auto& ct : victims) {
    if (nfct_query(impl_->del.get(), NFCT_Q_DESTROY, ct.get()) == 0) {
      ++deleted;
    } else if (errno != ENOENT) {
      return makeError(errno,
                       "conntrack: delete flow of " + f.egress.str() + ": " + strerror(errno));
    }
  }
  return deleted;
}

Result<std::map<IpAddress, size_t>> Conntrack::countByEgress() {
  auto c = census(false);
  if (!c) return c.error();
  return std::move(c->by_egress);
}

Result<gateway::FlowCensus> Conntrack::census(bool per_destination) {
  gateway::FlowCensus out;
  // (pod, protocol, destination address, destination port) -> flows
  std::map<std::tuple<IpAddress, uint8_t, IpAddress, uint16_t>, size_t> per_dest;
  for (uint8_t fam : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    auto st = dumpSnat(impl_->dump.get(), fam, [&](const nf_conntrack* ct) {
      if (auto rd = replyDst(ct)) out.by_egress[*rd]++;
      if (!per_destination) return;
      auto src = origSrc(ct);
      auto dst = ct::address(ct, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
      if (!src || !dst) return;
      const uint8_t proto = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
      const uint16_t dport = proto == IPPROTO_TCP || proto == IPPROTO_UDP
                                 ? ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST))
                                 : 0;
      const size_t n = ++per_dest[std::tuple{*src, proto, *dst, dport}];
      auto& peak = out.busiest_destination[*src];
      peak = std::max(peak, n);
    });
    if (!st) return st.error();
  }
  return out;
}

}  // namespace nsegress::netlink

namespace nsegress::netlink {

Result<size_t> Conntrack::repin(const gateway::ConntrackRepin& rp) {
  if (rp.sources.empty()) return size_t{0};
  const std::set<IpAddress> sources(rp.sources.begin(), rp.sources.end());
  std::vector<CtPtr> flows;
  ct::FilterPtr filter(nfct_filter_dump_create());
  nfct_filter_dump_set_attr_u8(filter.get(), NFCT_FILTER_DUMP_L3NUM,
                               rp.sources.front().isV4() ? AF_INET : AF_INET6);
  nfct_filter_dump_mark mark{rp.from, rp.mask};
  nfct_filter_dump_set_attr(filter.get(), NFCT_FILTER_DUMP_MARK, &mark);
  struct Ctx {
    const std::set<IpAddress>* sources;
    std::vector<CtPtr>* flows;
    uint32_t from, mask;
  } ctx{&sources, &flows, rp.from, rp.mask};
  nfct_handle* h = impl_->dump.get();
  nfct_callback_unregister(h);
  nfct_callback_register(
      h, NFCT_T_ALL,
      [](enum nf_conntrack_msg_type, struct nf_conntrack* c, void* data) -> int {
        auto* x = static_cast<Ctx*>(data);
        if ((nfct_get_attr_u32(c, ATTR_MARK) & x->mask) != x->from) return NFCT_CB_CONTINUE;
        auto src = origSrc(c);
        if (!src || !x->sources->count(*src)) return NFCT_CB_CONTINUE;
        CtPtr key(nfct_new());
        nfct_copy(key.get(), c, NFCT_CP_ORIG);
        nfct_set_attr_u32(key.get(), ATTR_MARK, nfct_get_attr_u32(c, ATTR_MARK));
        x->flows->push_back(std::move(key));
        return NFCT_CB_CONTINUE;
      },
      &ctx);
  const int r = nfct_query(h, NFCT_Q_DUMP_FILTER, filter.get());
  nfct_callback_unregister(h);
  if (r < 0)
    return makeError(errno, std::string("conntrack: dump for re-pinning: ") + strerror(errno));
  size_t done = 0;
  for (auto& c : flows) {
    const uint32_t m = (nfct_get_attr_u32(c.get(), ATTR_MARK) & ~rp.mask) | rp.to;
    nfct_set_attr_u32(c.get(), ATTR_MARK, m);
    if (nfct_query(impl_->del.get(), NFCT_Q_UPDATE, c.get()) == 0) {
      ++done;
    } else if (errno != ENOENT) {
      return makeError(errno, std::string("conntrack: re-pin a flow: ") + strerror(errno));
    }
  }
  return done;
}

}  // namespace nsegress::netlink
