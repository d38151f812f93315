// Shared by conntrack.cc and ct_sync.cc (internal to netlink/).
#pragma once

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nf_conntrack_common.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include "nsegress/common/fd.h"
#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::netlink::ct {

using HandlePtr = Handle<nfct_handle, nfct_close>;
using CtPtr = Handle<nf_conntrack, nfct_destroy>;
using FilterPtr = Handle<nfct_filter_dump, nfct_filter_dump_destroy>;

inline std::optional<IpAddress> address(const nf_conntrack* ct, nf_conntrack_attr v4,
                                        nf_conntrack_attr v6) {
  const uint8_t l3 = nfct_get_attr_u8(ct, ATTR_L3PROTO);
  if (l3 == AF_INET)
    return IpAddress::fromBytes(Family::V4, static_cast<const uint8_t*>(nfct_get_attr(ct, v4)));
  if (l3 == AF_INET6)
    return IpAddress::fromBytes(Family::V6, static_cast<const uint8_t*>(nfct_get_attr(ct, v6)));
  return std::nullopt;
}
inline std::optional<IpAddress> replyDst(const nf_conntrack* ct) {
  return address(ct, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
}
inline std::optional<IpAddress> origSrc(const nf_conntrack* ct) {
  return address(ct, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
}

// Dumps source-NATed flows of one family (filtered in the kernel by L3
// protocol and the IPS_SRC_NAT status bit); calls `fn` for each.
inline Status dumpSnat(nfct_handle* h, uint8_t family,
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

}  // namespace nsegress::netlink::ct
