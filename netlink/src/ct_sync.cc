#include "nsegress/netlink/ct_sync.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_compat.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <sys/socket.h>

#include <map>
#include <set>
#include <vector>

#include "ct_util.h"

namespace nsegress::netlink {

namespace {

using MnlPtr = Handle<mnl_socket, mnl_socket_close>;
using ct::CtPtr;

constexpr uint8_t kTcp = IPPROTO_TCP, kUdp = IPPROTO_UDP;

Error sysError(const std::string& what) {
  return makeError(errno, "conntrack sync: " + what + ": " + strerror(errno));
}

// A source-NATed TCP/UDP flow as sync carries it; nullopt for anything else.
std::optional<ctsync::Flow> flowOf(const nf_conntrack* c) {
  if (!(nfct_get_attr_u32(c, ATTR_STATUS) & IPS_SRC_NAT)) return std::nullopt;
  const uint8_t proto = nfct_get_attr_u8(c, ATTR_L4PROTO);
  if (proto != kTcp && proto != kUdp) return std::nullopt;
  auto src = ct::origSrc(c);
  auto dst = ct::address(c, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
  auto egress = ct::replyDst(c);
  if (!src || !dst || !egress) return std::nullopt;
  ctsync::Flow f;
  f.proto = proto;
  f.src = *src;
  f.dst = *dst;
  f.egress = *egress;
  f.sport = ntohs(nfct_get_attr_u16(c, ATTR_ORIG_PORT_SRC));
  f.dport = ntohs(nfct_get_attr_u16(c, ATTR_ORIG_PORT_DST));
  f.nat_port = ntohs(nfct_get_attr_u16(c, ATTR_REPL_PORT_DST));
  if (proto == kTcp && nfct_attr_is_set(c, ATTR_TCP_STATE)) {
    f.tcp_state = nfct_get_attr_u8(c, ATTR_TCP_STATE);
    if (f.tcp_state > TCP_CONNTRACK_SYN_SENT2) f.tcp_state = TCP_CONNTRACK_ESTABLISHED;
  }
  f.assured = (nfct_get_attr_u32(c, ATTR_STATUS) & IPS_ASSURED) != 0;
  return f;
}

void setAddress(nf_conntrack* c, const IpAddress& a, nf_conntrack_attr v4, nf_conntrack_attr v6) {
  nfct_set_attr(c, a.isV4() ? v4 : v6, a.bytes());
}

// The timeout an entry gets at commit: what the kernel gives such a flow by
// default (the next packet refreshes it as usual).
uint32_t timeoutOf(const ctsync::Flow& f) {
  if (f.proto == kUdp) return f.assured ? 120 : 30;
  return f.tcp_state == TCP_CONNTRACK_ESTABLISHED ? 432000 : 120;
}

// The entry as ctnetlink creates it: both tuples, the source NAT binding
// (address and port: the translated reply tuple is exactly the synced one), the
// TCP state with window tracking relaxed (this node never saw the
// sequence numbers), seen-reply/assured.
CtPtr build(const ctsync::Flow& f, bool tuple_only) {
  CtPtr c(nfct_new());
  const bool v4 = f.src.isV4();
  nfct_set_attr_u8(c.get(), ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
  nfct_set_attr_u8(c.get(), ATTR_L4PROTO, f.proto);
  setAddress(c.get(), f.src, ATTR_ORIG_IPV4_SRC, ATTR_ORIG_IPV6_SRC);
  setAddress(c.get(), f.dst, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
  nfct_set_attr_u16(c.get(), ATTR_ORIG_PORT_SRC, htons(f.sport));
  nfct_set_attr_u16(c.get(), ATTR_ORIG_PORT_DST, htons(f.dport));
  if (tuple_only) return c;
  nfct_set_attr_u8(c.get(), ATTR_REPL_L3PROTO, v4 ? AF_INET : AF_INET6);
  nfct_set_attr_u8(c.get(), ATTR_REPL_L4PROTO, f.proto);
  // The reply tuple as before translation (the original inverted): the
  // kernel's NAT set-up rewrites it to the egress address and port and marks
  // the entry source-NATed. Given already translated, it would see nothing
  // to do and leave the flow untranslated.
  setAddress(c.get(), f.dst, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
  setAddress(c.get(), f.src, ATTR_REPL_IPV4_DST, ATTR_REPL_IPV6_DST);
  nfct_set_attr_u16(c.get(), ATTR_REPL_PORT_SRC, htons(f.dport));
  nfct_set_attr_u16(c.get(), ATTR_REPL_PORT_DST, htons(f.sport));
  setAddress(c.get(), f.egress, ATTR_SNAT_IPV4, ATTR_SNAT_IPV6);
  nfct_set_attr_u16(c.get(), ATTR_SNAT_PORT, htons(f.nat_port));
  nfct_set_attr_u32(c.get(), ATTR_TIMEOUT, timeoutOf(f));
  nfct_set_attr_u32(c.get(), ATTR_STATUS, IPS_SEEN_REPLY | (f.assured ? IPS_ASSURED : 0));
  if (f.proto == kTcp) {
    nfct_set_attr_u8(c.get(), ATTR_TCP_STATE, f.tcp_state);
    for (auto a :
         {ATTR_TCP_FLAGS_ORIG, ATTR_TCP_MASK_ORIG, ATTR_TCP_FLAGS_REPL, ATTR_TCP_MASK_REPL})
      nfct_set_attr_u8(c.get(), a, IP_CT_TCP_FLAG_BE_LIBERAL);
  }
  return c;
}

nlmsghdr* putMessage(char* buf, uint16_t type, uint16_t flags, uint32_t seq, bool v4) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  nlh->nlmsg_seq = seq;
  auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  g->nfgen_family = v4 ? AF_INET : AF_INET6;
  g->version = NFNETLINK_V0;
  g->res_id = 0;
  return nlh;
}

}  // namespace

struct ConntrackSync::Impl {
  MnlPtr events;
  MnlPtr cmd;  // commits (its own socket: acknowledgements only)
  ct::HandlePtr dump;
  std::vector<char> buf = std::vector<char>(1 << 20);
  uint32_t seq = 1;

  // Sends `msgs` (each built by `fill`) in batches and collects each one's
  // error code (0 = done).
  std::vector<int> run(size_t count, const std::function<nlmsghdr*(char*, size_t, uint32_t)>& fill);
};

Result<std::unique_ptr<ConntrackSync>> ConntrackSync::open(int rcvbuf, bool updates) {
  auto impl = std::make_unique<Impl>();
  impl->events.reset(mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC));
  impl->cmd.reset(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  impl->dump.reset(nfct_open(CONNTRACK, 0));
  if (!impl->events || !impl->cmd || !impl->dump) return sysError("open");
  const int fd = mnl_socket_get_fd(impl->events.get());
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
    return sysError("receive buffer");
  if (mnl_socket_bind(impl->events.get(),
                      NF_NETLINK_CONNTRACK_NEW | (updates ? NF_NETLINK_CONNTRACK_UPDATE : 0) |
                          NF_NETLINK_CONNTRACK_DESTROY,
                      MNL_SOCKET_AUTOPID) != 0)
    return sysError("subscribe to events");
  if (mnl_socket_bind(impl->cmd.get(), 0, MNL_SOCKET_AUTOPID) != 0) return sysError("bind");
  const int one = 1, cmd_buf = 4 << 20;
  const int cfd = mnl_socket_get_fd(impl->cmd.get());
  setsockopt(cfd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  if (setsockopt(cfd, SOL_SOCKET, SO_RCVBUFFORCE, &cmd_buf, sizeof cmd_buf) != 0)
    setsockopt(cfd, SOL_SOCKET, SO_RCVBUF, &cmd_buf, sizeof cmd_buf);
  const timeval tv{1, 0};  // never wait forever for the kernel
  setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return std::unique_ptr<ConntrackSync>(new ConntrackSync(std::move(impl)));
}

ConntrackSync::ConntrackSync(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConntrackSync::~ConntrackSync() = default;

int ConntrackSync::eventFd() const {
  return mnl_socket_get_fd(impl_->events.get());
}

Result<std::vector<ctsync::Change>> ConntrackSync::readEvents() {
  std::vector<ctsync::Change> out;
  CtPtr c(nfct_new());
  // Bounded per call, so the sync thread also sends what it read.
  for (int round = 0; round < 64; ++round) {
    const ssize_t n =
        mnl_socket_recvfrom(impl_->events.get(), impl_->buf.data(), impl_->buf.size());
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) return makeError(ENOBUFS, "conntrack sync: the kernel dropped events");
      return sysError("read events");
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<nlmsghdr*>(impl_->buf.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_CTNETLINK) continue;
      const uint16_t type = NFNL_MSG_TYPE(nlh->nlmsg_type);
      if (type != IPCTNL_MSG_CT_NEW && type != IPCTNL_MSG_CT_DELETE) continue;
      nfct_set_attr_u32(c.get(), ATTR_STATUS, 0);
      if (nfct_nlmsg_parse(nlh, c.get()) < 0) continue;
      if (auto f = flowOf(c.get()))
        out.push_back(
            {type == IPCTNL_MSG_CT_DELETE ? ctsync::Op::kDelete : ctsync::Op::kUpsert, *f});
    }
  }
  return out;
}

Result<std::vector<ctsync::Flow>> ConntrackSync::dump(const std::set<IpAddress>& egress) {
  std::vector<ctsync::Flow> out;
  bool v4 = false, v6 = false;
  for (const auto& ip : egress) (ip.isV4() ? v4 : v6) = true;
  for (auto [fam, want] : {std::pair{uint8_t{AF_INET}, v4}, std::pair{uint8_t{AF_INET6}, v6}}) {
    if (!want) continue;
    auto st = ct::dumpSnat(impl_->dump.get(), fam, [&](const nf_conntrack* c) {
      if (auto f = flowOf(c); f && egress.count(f->egress)) out.push_back(*f);
    });
    if (!st) return st.error();
  }
  return out;
}

std::vector<int> ConntrackSync::Impl::run(
    size_t count, const std::function<nlmsghdr*(char*, size_t, uint32_t)>& fill) {
  std::vector<int> result(count, 0);
  std::vector<char> rx(1 << 18);
  size_t next = 0;
  while (next < count) {
    // A batch: at most kBatch messages (their acknowledgements, queued by
    // the kernel while it handles the send, must fit the receive buffer).
    constexpr size_t kBatch = 128;
    std::vector<char> tx(1 << 16);
    mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(tx.data(), tx.size() - 4096);
    std::map<uint32_t, size_t> index;
    const uint32_t first = seq;
    while (next < count && index.size() < kBatch) {
      fill(static_cast<char*>(mnl_nlmsg_batch_current(b)), next, seq);
      if (!mnl_nlmsg_batch_next(b)) break;  // did not fit: first of the next batch
      index[seq++] = next++;
    }
    const size_t sent = index.size();
    if (mnl_socket_sendto(cmd.get(), mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) < 0) {
      for (auto& [s, i] : index) result[i] = errno ? errno : EIO;
      mnl_nlmsg_batch_stop(b);
      continue;
    }
    mnl_nlmsg_batch_stop(b);
    size_t acked = 0;
    std::set<uint32_t> acked_seq;
    while (acked < sent) {
      const ssize_t n = mnl_socket_recvfrom(cmd.get(), rx.data(), rx.size());
      if (n < 0) {
        // Lost acknowledgements (or none within the timeout): what was not
        // acknowledged counts as failed, never as done.
        const int e = errno == EAGAIN ? ETIMEDOUT : errno;
        for (auto& [s, i] : index)
          if (!acked_seq.count(s)) result[i] = e;
        break;
      }
      int len = static_cast<int>(n);
      for (auto* nlh = reinterpret_cast<nlmsghdr*>(rx.data()); mnl_nlmsg_ok(nlh, len);
           nlh = mnl_nlmsg_next(nlh, &len)) {
        if (nlh->nlmsg_type != NLMSG_ERROR) continue;
        auto it = index.find(nlh->nlmsg_seq);
        if (it == index.end() || nlh->nlmsg_seq < first) continue;
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (!acked_seq.insert(nlh->nlmsg_seq).second) continue;
        result[it->second] = -err->error;
        ++acked;
      }
    }
  }
  return result;
}

Result<gateway::CommitCount> ConntrackSync::commit(const std::vector<ctsync::Flow>& flows) {
  gateway::CommitCount count;
  auto create = [&](const std::vector<const ctsync::Flow*>& list) {
    return impl_->run(list.size(), [&](char* buf, size_t i, uint32_t seq) {
      nlmsghdr* nlh =
          putMessage(buf, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, seq, list[i]->src.isV4());
      nfct_nlmsg_build(nlh, build(*list[i], false).get());
      return nlh;
    });
  };
  std::vector<const ctsync::Flow*> all;
  for (const auto& f : flows) all.push_back(&f);
  auto res = create(all);
  // An entry of the same original tuple: this node's own flow of a pod it
  // steered to the failed owner. The synced entry (with the translation)
  // replaces it.
  std::vector<const ctsync::Flow*> clash;
  for (size_t i = 0; i < res.size(); ++i) {
    if (res[i] == 0)
      count.created++;
    else if (res[i] == EEXIST)
      clash.push_back(all[i]);
    else
      count.failed++;
  }
  if (!clash.empty()) {
    impl_->run(clash.size(), [&](char* buf, size_t i, uint32_t seq) {
      nlmsghdr* nlh = putMessage(buf, IPCTNL_MSG_CT_DELETE, 0, seq, clash[i]->src.isV4());
      nfct_nlmsg_build(nlh, build(*clash[i], true).get());
      return nlh;
    });
    auto again = create(clash);
    for (int r : again) {
      (r == 0 ? count.replaced : count.failed)++;
      if (r != 0 && !count.first_error) count.first_error = r;
    }
  }
  return count;
}

}  // namespace nsegress::netlink
