// The ownership protocol's messages on the wire (UDP datagrams between the
// gateways, and between a gateway and the standalone controller's lease
// server): "NSE1", an HMAC-SHA256 of the rest under the cluster's shared key,
// then the message as JSON. A datagram that is too long, unauthenticated or
// malformed is refused with a reason (counted by the receiver), never acted
// on. Replays are harmless by the protocol (docs/architecture.md):
// requests older than one answered are ignored, promises only delay, epochs
// order announcements.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "nsegress/common/ownership.h"
#include "nsegress/common/result.h"

namespace nsegress::ownership {

using Message = std::variant<Heartbeat, HeartbeatAck, Announce, LeaseRequest, LeaseReply>;

inline constexpr size_t kMaxDatagram = 60000;
inline constexpr size_t kMaxAddressesPerMessage = 512;
inline constexpr size_t kMinKeyBytes = 16;

std::string encode(const Message& m, std::string_view key);
Result<Message> decode(std::string_view datagram, std::string_view key);

// HMAC-SHA256 of `body` under `key` (32 bytes); shared by the peers' wires.
std::string hmacSha256(std::string_view key, std::string_view body);

// Reads a key file (bounded; at least kMinKeyBytes after trimming).
Result<std::string> readKeyFile(const std::string& path);

}  // namespace nsegress::ownership
