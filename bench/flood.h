// New-flow UDP traffic for the benchmarks: a raw-socket generator (every
// packet a new flow) and a counting sink on the lab's outside host.
#pragma once

#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "lab.h"

namespace nsegress::bench {

using Steady = std::chrono::steady_clock;

// The outside host counts (and drops, in its first hook) UDP to ports 5000-5999.
inline void installSink(lab::Lab& lab) {
  lab.exec(lab.outside(),
           "nft add table inet bsink \\; add counter inet bsink rx \\; add chain inet bsink pre "
           "'{ type filter hook prerouting priority -400; }' \\; add rule inet bsink pre udp "
           "dport 5000-5999 counter name rx drop");
}

inline uint64_t sinkCount(lab::Lab& lab) {
  auto j = nlohmann::json::parse(lab.exec(lab.outside(), "nft -j list counter inet bsink rx"));
  for (const auto& item : j["nftables"])
    if (item.contains("counter")) return item["counter"]["packets"].get<uint64_t>();
  return 0;
}

// New-flow UDP packets from `src` for `secs`; returns packets sent.
inline uint64_t generate(const std::string& src, double secs) {
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) throw std::runtime_error("raw socket");
  constexpr int kBatch = 64;
  constexpr size_t kLen = sizeof(iphdr) + sizeof(udphdr) + 18;
  static uint8_t pkts[kBatch][kLen];
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  inet_pton(AF_INET, lab::Lab::kOutsideIp, &dst.sin_addr);
  in_addr s{};
  inet_pton(AF_INET, src.c_str(), &s);
  for (int i = 0; i < kBatch; ++i) {
    std::memset(pkts[i], 0, kLen);
    auto* ip = reinterpret_cast<iphdr*>(pkts[i]);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(kLen);
    ip->saddr = s.s_addr;
    ip->daddr = dst.sin_addr.s_addr;
    auto* udp = reinterpret_cast<udphdr*>(pkts[i] + sizeof(iphdr));
    udp->len = htons(kLen - sizeof(iphdr));
    iov[i] = {pkts[i], kLen};
    msgs[i].msg_hdr = {};
    msgs[i].msg_hdr.msg_name = &dst;
    msgs[i].msg_hdr.msg_namelen = sizeof dst;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t sent = 0, x = 0x9E3779B97F4A7C15ull;
  const auto end = Steady::now() + std::chrono::duration<double>(secs);
  while (Steady::now() < end) {
    for (int i = 0; i < kBatch; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      auto* udp = reinterpret_cast<udphdr*>(pkts[i] + sizeof(iphdr));
      udp->source = htons(static_cast<uint16_t>(1024 + (x % 64000)));
      udp->dest = htons(static_cast<uint16_t>(5000 + ((x >> 20) % 1000)));
    }
    int k = sendmmsg(fd, msgs, kBatch, 0);
    if (k > 0) sent += static_cast<uint64_t>(k);
  }
  close(fd);
  return sent;
}

}  // namespace nsegress::bench
