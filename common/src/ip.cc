#include "nsegress/common/ip.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace nsegress {

IpAddress IpAddress::v4(uint32_t host_order) {
  IpAddress a;
  a.family_ = Family::V4;
  uint32_t n = htonl(host_order);
  std::memcpy(a.bytes_.data(), &n, 4);
  return a;
}

IpAddress IpAddress::fromBytes(Family f, const uint8_t* bytes) {
  IpAddress a;
  a.family_ = f;
  std::memcpy(a.bytes_.data(), bytes, f == Family::V4 ? 4 : 16);
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  std::string s(text);
  IpAddress a;
  if (s.find(':') == std::string::npos) {
    a.family_ = Family::V4;
    if (inet_pton(AF_INET, s.c_str(), a.bytes_.data()) != 1) return std::nullopt;
  } else {
    a.family_ = Family::V6;
    if (inet_pton(AF_INET6, s.c_str(), a.bytes_.data()) != 1) return std::nullopt;
  }
  return a;
}

uint32_t IpAddress::v4HostOrder() const {
  uint32_t n;
  std::memcpy(&n, bytes_.data(), 4);
  return ntohl(n);
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(isV4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
  return buf;
}

IpAddress IpAddress::plus(uint64_t n) const {
  IpAddress r = *this;
  int i = static_cast<int>(size()) - 1;
  uint64_t carry = n;
  while (carry != 0 && i >= 0) {
    uint64_t sum = r.bytes_[i] + (carry & 0xff);
    r.bytes_[i] = static_cast<uint8_t>(sum & 0xff);
    carry = (carry >> 8) + (sum >> 8);
    --i;
  }
  return r;
}

Cidr::Cidr(IpAddress base, int prefix) : prefix_(prefix) {
  // Normalise: clear host bits.
  uint8_t b[16];
  std::memcpy(b, base.bytes(), base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    int bits = prefix - static_cast<int>(i) * 8;
    if (bits >= 8) continue;
    b[i] = bits <= 0 ? 0 : static_cast<uint8_t>(b[i] & (0xff << (8 - bits)));
  }
  base_ = IpAddress::fromBytes(base.family(), b);
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  auto ptext = text.substr(slash + 1);
  int prefix = -1;
  auto [p, ec] = std::from_chars(ptext.data(), ptext.data() + ptext.size(), prefix);
  if (ec != std::errc() || p != ptext.data() + ptext.size() || ptext.empty()) return std::nullopt;
  int maxp = addr->isV4() ? 32 : 128;
  if (prefix < 0 || prefix > maxp) return std::nullopt;
  return Cidr(*addr, prefix);
}

bool Cidr::contains(const IpAddress& a) const {
  if (a.family() != base_.family()) return false;
  return Cidr(a, prefix_).base_ == base_;
}

uint64_t Cidr::size() const {
  int host_bits = (base_.isV4() ? 32 : 128) - prefix_;
  if (host_bits >= 63) return uint64_t{1} << 63;
  return uint64_t{1} << host_bits;
}

IpAddress Cidr::last() const {
  uint8_t b[16];
  std::memcpy(b, base_.bytes(), base_.size());
  for (size_t i = 0; i < base_.size(); ++i) {
    int bits = prefix_ - static_cast<int>(i) * 8;
    if (bits >= 8) continue;
    b[i] |= bits <= 0 ? 0xff : static_cast<uint8_t>(0xff >> bits);
  }
  return IpAddress::fromBytes(base_.family(), b);
}

std::string Cidr::str() const {
  return base_.str() + "/" + std::to_string(prefix_);
}

std::optional<Ipv4Port> parseIpv4Port(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || text.size() - colon - 1 > 5 || colon + 1 == text.size())
    return std::nullopt;
  auto ip = IpAddress::parse(text.substr(0, colon));
  if (!ip || !ip->isV4()) return std::nullopt;
  unsigned port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  return Ipv4Port{*ip, static_cast<uint16_t>(port)};
}

std::optional<IpPort> parseIpPort(std::string_view text) {
  if (text.empty() || text.front() != '[') return parseIpv4Port(text);
  const auto close = text.find("]:");
  if (close == std::string_view::npos) return std::nullopt;
  auto ip = IpAddress::parse(text.substr(1, close - 1));
  if (!ip || ip->isV4()) return std::nullopt;
  // The port part, checked as IPv4's is.
  auto p = parseIpv4Port("0.0.0.0" + std::string(text.substr(close + 1)));
  if (!p) return std::nullopt;
  return IpPort{*ip, p->port};
}

}  // namespace nsegress
