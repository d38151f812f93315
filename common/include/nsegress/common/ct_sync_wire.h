// Conntrack state sync on the wire: UDP datagrams from the gateway that owns
// an egress address to that address's standby, carrying the address's
// source-NATed flows (docs/architecture.md, "Conntrack sync").
//
//   "NSC1" | HMAC-SHA256 (32 bytes, over the rest, the peers' shared key) |
//   kind u8 | name length u8 | sender node name |
//   stream u64 | seq u64 | generation u64 |
//   address count u16 | addresses (family u8 + 16 bytes) |
//   change count u16  | changes (kChangeBytes each)
//
// Binary and fixed-size, because a busy gateway sends tens of thousands of
// changes a second; every field is checked (families, protocols, states,
// counts, no trailing bytes) and a bad datagram is refused whole.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::ctsync {

// One source-NATed flow, as the standby needs it to recreate the entry.
struct Flow {
  uint8_t proto = 6;  // IPPROTO_TCP or IPPROTO_UDP
  IpAddress src;      // original direction: the pod ...
  IpAddress dst;      // ... to the outside server
  uint16_t sport = 0;
  uint16_t dport = 0;
  IpAddress egress;  // the SNAT address (the reply's destination)
  uint16_t nat_port = 0;
  uint8_t tcp_state = 0;  // TCP_CONNTRACK_* (0 for UDP)
  bool assured = false;   // seen in both directions
  bool operator==(const Flow&) const = default;
  // The original tuple: what identifies the flow in a conntrack table.
  auto key() const { return std::tie(proto, src, sport, dst, dport); }
};

enum class Op : uint8_t { kUpsert = 1, kDelete = 2 };
struct Change {
  Op op = Op::kUpsert;
  Flow flow;
  bool operator==(const Change&) const = default;
};

enum class Kind : uint8_t {
  kEvents = 1,         // changes as the kernel reported them
  kResync = 2,         // a full dump of `addresses`' flows, generation `generation`
  kResyncDone = 3,     // the dump of `generation` is complete for `addresses`
  kKeepalive = 4,      // nothing new; `seq` is the last sent (tail loss shows)
  kResyncRequest = 5,  // receiver → sender: send `addresses` again (empty: all)
};

struct Datagram {
  Kind kind = Kind::kEvents;
  std::string from;
  uint64_t stream = 0;      // the sender's incarnation
  uint64_t seq = 0;         // per (stream, receiver): consecutive from 1
  uint64_t generation = 0;  // the sender's resync generation
  std::vector<IpAddress> addresses;
  std::vector<Change> changes;
  bool operator==(const Datagram&) const = default;
};

inline constexpr size_t kMaxDatagram = 60000;
inline constexpr size_t kChangeBytes = 61;
inline constexpr size_t kMaxChanges = 900;  // 900 × 61 + header < kMaxDatagram
inline constexpr size_t kMaxAddresses = 256;

std::string encode(const Datagram& d, std::string_view key);
Result<Datagram> decode(std::string_view bytes, std::string_view key);

}  // namespace nsegress::ctsync
