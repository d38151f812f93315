// IP address and prefix value types shared by both processes. IPv4 and IPv6.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace nsegress {

enum class Family : uint8_t { V4 = 4, V6 = 6 };

class IpAddress {
 public:
  IpAddress() = default;
  static IpAddress v4(uint32_t host_order);
  static IpAddress fromBytes(Family f, const uint8_t* bytes);
  // Strict parse: exactly one address, no prefix, no surrounding spaces.
  static std::optional<IpAddress> parse(std::string_view text);

  Family family() const { return family_; }
  bool isV4() const { return family_ == Family::V4; }
  // Network-order bytes; 4 significant bytes for IPv4, 16 for IPv6.
  const uint8_t* bytes() const { return bytes_.data(); }
  size_t size() const { return isV4() ? 4 : 16; }
  uint32_t v4HostOrder() const;  // only for V4
  std::string str() const;

  // Address + n within the same family (wraps are the caller's problem: see Cidr).
  IpAddress plus(uint64_t n) const;

  auto operator<=>(const IpAddress&) const = default;

 private:
  Family family_ = Family::V4;
  std::array<uint8_t, 16> bytes_{};
};

class Cidr {
 public:
  Cidr() = default;
  Cidr(IpAddress base, int prefix);
  static std::optional<Cidr> parse(std::string_view text);  // "a.b.c.d/n" or "x::/n"

  const IpAddress& network() const { return base_; }
  int prefix() const { return prefix_; }
  bool contains(const IpAddress& a) const;
  // Number of addresses, saturated at 2^63.
  uint64_t size() const;
  IpAddress last() const;
  std::string str() const;
  auto operator<=>(const Cidr&) const = default;

 private:
  IpAddress base_;
  int prefix_ = 0;
};

// "IPv4:port" (port 1-65535), as the failover flags and the leader's
// Endpoints name a UDP endpoint; nullopt for anything else.
struct IpPort {
  IpAddress ip;
  uint16_t port = 0;
};
using Ipv4Port = IpPort;
std::optional<Ipv4Port> parseIpv4Port(std::string_view text);
// "IPv4:port" or "[IPv6]:port" (port 1-65535, digits only); nullopt for
// anything else.
std::optional<IpPort> parseIpPort(std::string_view text);

}  // namespace nsegress

template <>
struct std::hash<nsegress::IpAddress> {
  size_t operator()(const nsegress::IpAddress& a) const noexcept {
    size_t h = static_cast<size_t>(a.family());
    for (size_t i = 0; i < a.size(); ++i) h = h * 131 + a.bytes()[i];
    return h;
  }
};
