#include "nsegress/netlink/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <vector>

#include "nsegress/common/fd.h"

namespace nsegress::netlink {

namespace {
using HandlePtr = Handle<nfct_handle, nfct_close>;
using CtPtr = Handle<nf_conntrack, nfct_destroy>;
using FilterPtr = Handle<nfct_filter_dump, nfct_filter_dump_destroy>;

std::optional<IpAddress> replyDst(const nf_conntrack* ct) {
  uint8_t l3 = nfct_get_attr_u8(ct, ATTR_L3PROTO);
  if (l3 == AF_INET)
    return IpAddress::fromBytes(Family::V4,
                                static_cast<const uint8_t*>(nfct_get_attr(ct, ATTR_REPL_IPV4_DST)));
  if (l3 == AF_INET6)
    return IpAddress::fromBytes(Family::V6,
                                static_cast<const uint8_t*>(nfct_get_attr(ct, ATTR_REPL_IPV6_DST)));
  return std::nullopt;
}

std::optional<IpAddress> origSrc(const nf_conntrack* ct) {
  uint8_t l3 = nfct_get_attr_u8(ct, ATTR_L3PROTO);
  if (l3 == AF_INET)
    return IpAddress::fromBytes(Family::V4,
                                static_cast<const uint8_t*>(nfct_get_attr(ct, ATTR_ORIG_IPV4_SRC)));
  if (l3 == AF_INET6)
    return IpAddress::fromBytes(Family::V6,
                                static_cast<const uint8_t*>(nfct_get_attr(ct, ATTR_ORIG_IPV6_SRC)));
  return std::nullopt;
}

// Dumps SNATed flows of one family; calls `fn` for each.
Status dumpSnat(nfct_handle* h, uint8_t family,
                const std::function<void(const nf_conntrack*)>& fn) {
  FilterPtr filter(nfct_filter_dump_create());
  nfct_filter_dump_set_attr_u8(filter.get(), NFCT_FILTER_DUMP_L3NUM, family);
  nfct_filter_dump_mark status{IPS_SRC_NAT, IPS_SRC_NAT};
  nfct_filter_dump_set_attr(filter.get(), NFCT_FILTER_DUMP_STATUS, &status);
  struct Ctx {
    const std::function<void(const nf_conntrack*)>* fn;
  } ctx{&fn};
  nfct_callback_unregister(h);
  nfct_callback_register(
      h, NFCT_T_ALL,
      [](enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) -> int {
        const uint32_t st = nfct_get_attr_u32(ct, ATTR_STATUS);
        if (st & IPS_SRC_NAT) (*static_cast<Ctx*>(data)->fn)(ct);
        return NFCT_CB_CONTINUE;
      },
      &ctx);
  int r = nfct_query(h, NFCT_Q_DUMP_FILTER, filter.get());
  nfct_callback_unregister(h);
  if (r < 0) return makeError(errno, std::string("conntrack: dump: ") + strerror(errno));
  return okStatus();
}
}  // namespace

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
  std::map<IpAddress, size_t> out;
  for (uint8_t fam : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    auto st = dumpSnat(impl_->dump.get(), fam, [&](const nf_conntrack* ct) {
      if (auto rd = replyDst(ct)) out[*rd]++;
    });
    if (!st) return st.error();
  }
  return out;
}

}  // namespace nsegress::netlink
