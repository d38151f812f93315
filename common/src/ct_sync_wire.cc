#include "nsegress/common/ct_sync_wire.h"

#include <openssl/crypto.h>

#include <cerrno>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/peer_wire.h"

namespace nsegress::ctsync {

namespace {

constexpr std::string_view kMagic = "NSC1";
constexpr size_t kMac = 32;
constexpr uint8_t kTcp = 6, kUdp = 17;
constexpr uint8_t kMaxTcpState = 9;  // TCP_CONNTRACK_SYN_SENT2 (= LISTEN)

Error bad(const std::string& what) {
  return makeError(EINVAL, "conntrack sync datagram: " + what);
}

class Writer {
 public:
  void u8(uint8_t v) { s_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  }
  void u64(uint64_t v) {
    for (int i = 7; i >= 0; --i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void bytes(std::string_view b) { s_.append(b); }
  void ip(const IpAddress& a) {
    std::array<char, 16> b{};
    std::copy_n(reinterpret_cast<const char*>(a.bytes()), a.size(), b.begin());
    s_.append(b.data(), b.size());
  }
  std::string take() { return std::move(s_); }

 private:
  std::string s_;
};

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool u8(uint8_t& v) {
    if (s_.size() < 1) return false;
    v = static_cast<uint8_t>(s_[0]);
    s_.remove_prefix(1);
    return true;
  }
  bool u16(uint16_t& v) {
    uint8_t a, b;
    if (!u8(a) || !u8(b)) return false;
    v = static_cast<uint16_t>(a << 8 | b);
    return true;
  }
  bool u64(uint64_t& v) {
    v = 0;
    for (int i = 0; i < 8; ++i) {
      uint8_t b;
      if (!u8(b)) return false;
      v = v << 8 | b;
    }
    return true;
  }
  bool bytes(size_t n, std::string_view& out) {
    if (s_.size() < n) return false;
    out = s_.substr(0, n);
    s_.remove_prefix(n);
    return true;
  }
  // An address of `family` in 16 bytes; the unused 12 bytes of an IPv4
  // address must be zero (one encoding per value).
  bool ip(Family family, IpAddress& out) {
    std::string_view b;
    if (!bytes(16, b)) return false;
    const auto* p = reinterpret_cast<const uint8_t*>(b.data());
    if (family == Family::V4)
      for (size_t i = 4; i < 16; ++i)
        if (p[i] != 0) return false;
    out = IpAddress::fromBytes(family, p);
    return true;
  }
  bool done() const { return s_.empty(); }

 private:
  std::string_view s_;
};

bool familyOf(uint8_t v, Family& f) {
  if (v == 4)
    f = Family::V4;
  else if (v == 6)
    f = Family::V6;
  else
    return false;
  return true;
}

}  // namespace

std::string encode(const Datagram& d, std::string_view key) {
  Writer w;
  w.u8(static_cast<uint8_t>(d.kind));
  w.u8(static_cast<uint8_t>(d.from.size()));
  w.bytes(d.from);
  w.u64(d.stream);
  w.u64(d.seq);
  w.u64(d.generation);
  w.u16(static_cast<uint16_t>(d.addresses.size()));
  for (const auto& a : d.addresses) {
    w.u8(static_cast<uint8_t>(a.family()));
    w.ip(a);
  }
  w.u16(static_cast<uint16_t>(d.changes.size()));
  for (const auto& c : d.changes) {
    const Flow& f = c.flow;
    w.u8(static_cast<uint8_t>(c.op));
    w.u8(static_cast<uint8_t>(f.src.family()));
    w.u8(f.proto);
    w.u8(f.tcp_state);
    w.u8(f.assured ? 1 : 0);
    w.ip(f.src);
    w.ip(f.dst);
    w.u16(f.sport);
    w.u16(f.dport);
    w.ip(f.egress);
    w.u16(f.nat_port);
  }
  const std::string body = w.take();
  return std::string(kMagic) + ownership::hmacSha256(key, body) + body;
}

Result<Datagram> decode(std::string_view bytes, std::string_view key) {
  if (bytes.size() > kMaxDatagram) return bad("too long");
  if (bytes.size() < kMagic.size() + kMac || bytes.substr(0, kMagic.size()) != kMagic)
    return bad("not a conntrack sync datagram");
  const auto got = bytes.substr(kMagic.size(), kMac);
  const auto body = bytes.substr(kMagic.size() + kMac);
  const auto want = ownership::hmacSha256(key, body);
  if (CRYPTO_memcmp(got.data(), want.data(), kMac) != 0) return bad("authentication failed");

  Reader r(body);
  Datagram d;
  uint8_t kind = 0, name_len = 0;
  std::string_view name;
  if (!r.u8(kind) || !r.u8(name_len) || !r.bytes(name_len, name)) return bad("truncated header");
  if (kind < 1 || kind > 5) return bad("unknown kind");
  d.kind = static_cast<Kind>(kind);
  d.from = std::string(name);
  if (!isDnsSubdomain(d.from)) return bad("sender is not a node name");
  if (!r.u64(d.stream) || !r.u64(d.seq) || !r.u64(d.generation)) return bad("truncated header");
  uint16_t n = 0;
  if (!r.u16(n)) return bad("truncated address count");
  if (n > kMaxAddresses) return bad("too many addresses");
  for (uint16_t i = 0; i < n; ++i) {
    uint8_t fam = 0;
    Family f;
    IpAddress a;
    if (!r.u8(fam) || !familyOf(fam, f) || !r.ip(f, a)) return bad("bad address");
    d.addresses.push_back(a);
  }
  if (!r.u16(n)) return bad("truncated change count");
  if (n > kMaxChanges) return bad("too many changes");
  if ((d.kind == Kind::kKeepalive || d.kind == Kind::kResyncRequest ||
       d.kind == Kind::kResyncDone) &&
      n != 0)
    return bad("changes in a datagram that carries none");
  for (uint16_t i = 0; i < n; ++i) {
    Change c;
    uint8_t op = 0, fam = 0, assured = 0;
    Family f;
    Flow& fl = c.flow;
    if (!r.u8(op) || !r.u8(fam) || !r.u8(fl.proto) || !r.u8(fl.tcp_state) || !r.u8(assured))
      return bad("truncated change");
    if (op != 1 && op != 2) return bad("unknown operation");
    if (!familyOf(fam, f)) return bad("unknown family");
    if (fl.proto != kTcp && fl.proto != kUdp) return bad("protocol is neither TCP nor UDP");
    if (fl.proto == kTcp ? fl.tcp_state > kMaxTcpState : fl.tcp_state != 0)
      return bad("bad TCP state");
    if (assured > 1) return bad("bad flags");
    c.op = static_cast<Op>(op);
    fl.assured = assured == 1;
    if (!r.ip(f, fl.src) || !r.ip(f, fl.dst) || !r.u16(fl.sport) || !r.u16(fl.dport) ||
        !r.ip(f, fl.egress) || !r.u16(fl.nat_port))
      return bad("truncated change");
    d.changes.push_back(c);
  }
  if (!r.done()) return bad("trailing bytes");
  return d;
}

}  // namespace nsegress::ctsync
