// nsegress-labtool: traffic for the lab (tests, demo). Sends and receives only
// to addresses given on the command line, inside the lab's namespaces.
//   serve  --udp-port P --tcp-port P        print "udp|tcp <peer> <payload>" per message
//   send   --proto udp|tcp|icmp --dst A --port P  send "<tag> <seq>" messages
//          [--size N] (payload bytes) [--replies] (count the echoes)
//   bulk   --dst A --port P --bytes N        one TCP transfer; the server answers its count
//   streams --dst A --talk N --down N --udp N --seconds S [--base-port B]
//          long-lived flows (serve's ports 9003 TCP, 9004 UDP): "talk" sends a
//          line every 20 ms and reads its echo; "down" only reads what the
//          server pushes every 10 ms; "udp" sends every 20 ms and reads the
//          server's answer naming the address:port it saw. Prints, per kind,
//          the flows that survived (no error, data in the last second, UDP:
//          the server saw one address:port throughout) and the longest gap.
//   vxlan  --to A --port P --vni V --dst-mac M --inner-src S --inner-dst D
//          a hand-made VXLAN packet (inner UDP "<tag> <seq>"): how a node that
//          forges another node's pod would send
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

sockaddr_storage addrOf(const std::string& ip, int port, socklen_t* len) {
  sockaddr_storage ss{};
  if (ip.find(':') == std::string::npos) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip.c_str(), &s->sin_addr) != 1)
      throw std::runtime_error("bad address " + ip);
    *len = sizeof(sockaddr_in);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, ip.c_str(), &s->sin6_addr) != 1)
      throw std::runtime_error("bad address " + ip);
    *len = sizeof(sockaddr_in6);
  }
  return ss;
}

std::string peerStr(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
  } else {
    auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
      inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof buf);
    }
  }
  return buf;
}

uint16_t sourcePort(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

// Dual-stack listening socket on [::]:port.
int listenOn(int type, int port) {
  int fd = socket(AF_INET6, type, 0);
  int on = 1, off = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(static_cast<uint16_t>(port));
  a.sin6_addr = in6addr_any;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    perror("bind");
    exit(1);
  }
  if (type == SOCK_STREAM) listen(fd, 512);
  return fd;
}

// Bulk sink: reads a whole connection, answers the byte count, prints it.
void bulkSink(int port) {
  int l = listenOn(SOCK_STREAM, port);
  for (;;) {
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    int c = accept(l, reinterpret_cast<sockaddr*>(&ss), &sl);
    if (c < 0) continue;
    std::thread([c, peer = peerStr(ss)] {
      uint64_t total = 0;
      std::vector<char> buf(1 << 16);
      ssize_t n;
      while ((n = read(c, buf.data(), buf.size())) > 0) total += static_cast<uint64_t>(n);
      const std::string reply = std::to_string(total) + "\n";
      (void)!write(c, reply.data(), reply.size());
      close(c);
      std::cout << "bulk " << peer << " " << total << std::endl;
    }).detach();
  }
}

std::string peerPort(const sockaddr_storage& ss) {
  const uint16_t port = ss.ss_family == AF_INET
                            ? ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port)
                            : ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
  return peerStr(ss) + ":" + std::to_string(port);
}

// Long-lived TCP flows: the first line says "talk <id>" (echo each line) or
// "down <id>" (the server pushes a line every 10 ms; the client only reads).
void streamServer(int port) {
  int l = listenOn(SOCK_STREAM, port);
  for (;;) {
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    int c = accept(l, reinterpret_cast<sockaddr*>(&ss), &sl);
    if (c < 0) continue;
    std::thread([c, peer = peerPort(ss)] {
      std::string first;
      char ch;
      while (first.size() < 64 && read(c, &ch, 1) == 1 && ch != '\n') first.push_back(ch);
      std::cout << "stream " << peer << " " << first << std::endl;
      if (first.rfind("down", 0) == 0) {
        for (uint64_t i = 0;; ++i) {
          const std::string line = std::to_string(i) + "\n";
          if (write(c, line.data(), line.size()) <= 0) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      } else {
        char buf[2048];
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
          if (write(c, buf, static_cast<size_t>(n)) <= 0) break;
      }
      close(c);
    }).detach();
  }
}

// Long-lived UDP flows: answers each datagram with the address:port it came from.
void udpFlowServer(int port) {
  int u = listenOn(SOCK_DGRAM, port);
  for (;;) {
    char buf[512];
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (recvfrom(u, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ss), &sl) < 0) continue;
    const std::string reply = peerPort(ss);
    sendto(u, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&ss), sl);
  }
}

int serve(int udp_port, int tcp_port, int bulk_port) {
  // A client that goes away must not take the server with it.
  signal(SIGPIPE, SIG_IGN);
  int u = listenOn(SOCK_DGRAM, udp_port);
  int t = listenOn(SOCK_STREAM, tcp_port);
  std::thread(bulkSink, bulk_port).detach();
  std::thread(streamServer, 9003).detach();
  std::thread(udpFlowServer, 9004).detach();
  struct Conn {
    std::string peer;
    std::string buf;
    uint16_t port = 0;
  };
  std::map<int, Conn> conns;
  std::cout << "ready" << std::endl;
  for (;;) {
    std::vector<pollfd> fds = {{u, POLLIN, 0}, {t, POLLIN, 0}};
    for (auto& [fd, _] : conns) fds.push_back({fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents & POLLIN) {
      char buf[9000];
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      ssize_t n = recvfrom(u, buf, sizeof buf - 1, 0, reinterpret_cast<sockaddr*>(&ss), &sl);
      if (n >= 0) {
        buf[n] = 0;
        std::string msg(buf);
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
        if (msg.size() > 200)
          msg = msg.substr(0, msg.find(' ', msg.find(' ') + 1)) + " len=" + std::to_string(n);
        std::cout << "udp " << peerStr(ss) << " " << msg << std::endl;
        // The source port apart (attribution by port): "sport PROTO PEER PORT TAG".
        std::cout << "sport udp " << peerStr(ss) << " " << sourcePort(ss) << " "
                  << msg.substr(0, msg.find(' ')) << std::endl;
        sendto(u, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&ss), sl);  // echo
      }
    }
    if (fds[1].revents & POLLIN) {
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      int c = accept(t, reinterpret_cast<sockaddr*>(&ss), &sl);
      if (c >= 0) conns[c] = Conn{peerStr(ss), {}, sourcePort(ss)};
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int fd = fds[i].fd;
      char buf[2048];
      ssize_t n = read(fd, buf, sizeof buf);
      auto& c = conns[fd];
      if (n <= 0) {
        close(fd);
        conns.erase(fd);
        continue;
      }
      c.buf.append(buf, static_cast<size_t>(n));
      size_t pos;
      while ((pos = c.buf.find('\n')) != std::string::npos) {
        std::cout << "tcp " << c.peer << " " << c.buf.substr(0, pos) << std::endl;
        std::cout << "sport tcp " << c.peer << " " << c.port << " "
                  << c.buf.substr(0, std::min(pos, c.buf.find(' '))) << std::endl;
        (void)!write(fd, c.buf.data(), pos + 1);  // echo the line
        c.buf.erase(0, pos + 1);
      }
    }
  }
}

// Binds `fd` to source address `src` even if it is not the host's own
// (IP_TRANSPARENT, which also lets the packets leave with it): how a pod
// with a raw socket or NET_ADMIN forges another pod's address. "" = the
// kernel's choice.
void bindSource(int fd, int family, const std::string& src) {
  if (src.empty()) return;
  int on = 1;
  if (family == AF_INET)
    setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &on, sizeof on);
  else
    setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &on, sizeof on);
  socklen_t len;
  auto ss = addrOf(src, 0, &len);
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    std::cerr << "bind " << src << ": " << strerror(errno) << std::endl;
    exit(2);
  }
}

// Connects with a timeout; -1 on failure.
int connectTcp(const std::string& dst, int port, int timeout_ms, const std::string& src) {
  socklen_t len;
  auto ss = addrOf(dst, port, &len);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  bindSource(fd, ss.ss_family, src);
  int r = connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  if (r < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, timeout_ms) != 1) {
    close(fd);
    return -1;
  }
  int err = 0;
  socklen_t el = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
  if (err != 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, 0);
  return fd;
}

// Waits up to `timeout_ms` for `fd` to be readable.
bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

uint16_t inetChecksum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// One ICMP echo request; true when its reply arrives in time.
bool ping(int fd, int family, const sockaddr_storage& ss, socklen_t len, uint16_t id, uint16_t seq,
          const std::string& payload, int timeout_ms, int* sent) {
  std::vector<uint8_t> pkt(8 + payload.size());
  pkt[0] = family == AF_INET ? uint8_t{ICMP_ECHO} : uint8_t{ICMP6_ECHO_REQUEST};
  pkt[4] = static_cast<uint8_t>(id >> 8), pkt[5] = static_cast<uint8_t>(id);
  pkt[6] = static_cast<uint8_t>(seq >> 8), pkt[7] = static_cast<uint8_t>(seq);
  std::memcpy(pkt.data() + 8, payload.data(), payload.size());
  if (family == AF_INET) {  // ICMPv6 checksums are the kernel's
    const uint16_t c = inetChecksum(pkt.data(), pkt.size());
    pkt[2] = static_cast<uint8_t>(c >> 8), pkt[3] = static_cast<uint8_t>(c);
  }
  if (sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<const sockaddr*>(&ss), len) < 0)
    return false;
  *sent = 1;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < end) {
    const int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          end - std::chrono::steady_clock::now())
                                          .count());
    if (!readable(fd, std::max(left, 1))) return false;
    uint8_t buf[9000];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) continue;
    const uint8_t* icmp = buf;
    if (family == AF_INET) {  // raw IPv4 sockets see the IP header
      const size_t ihl = (buf[0] & 0x0f) * 4u;
      if (static_cast<size_t>(n) < ihl + 8) continue;
      icmp = buf + ihl;
    }
    const uint8_t reply = family == AF_INET ? uint8_t{ICMP_ECHOREPLY} : uint8_t{ICMP6_ECHO_REPLY};
    if (icmp[0] == reply && (icmp[4] << 8 | icmp[5]) == id && (icmp[6] << 8 | icmp[7]) == seq)
      return true;
  }
  return false;
}

int send(const std::string& proto, const std::string& dst, int port, int count, int interval_ms,
         bool fresh, const std::string& tag, int timeout_ms, const std::string& src, int size,
         bool replies) {
  int sent = 0, failed = 0, replied = 0;
  int fd = -1;
  socklen_t len;
  // Raw IPv6 sockets read a port as the protocol: ICMP has none.
  auto ss = addrOf(dst, proto == "icmp" ? 0 : port, &len);
  const auto start = std::chrono::steady_clock::now();
  const uint16_t id = static_cast<uint16_t>(getpid());
  for (int seq = 0; seq < count; ++seq) {
    std::string msg = tag + " " + std::to_string(seq) + " ";
    if (static_cast<int>(msg.size()) + 1 < size) msg.append(size - msg.size() - 1, 'x');
    msg += "\n";
    bool ok = false, echoed = false;
    if (proto == "icmp") {
      if (fd < 0)
        fd = socket(ss.ss_family, SOCK_RAW,
                    ss.ss_family == AF_INET ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
      // With no `--replies`, a reply still counts, but is not waited for long.
      int sent_ok = 0;
      echoed = ping(fd, ss.ss_family, ss, len, id, static_cast<uint16_t>(seq), msg,
                    replies ? timeout_ms : 50, &sent_ok);
      ok = fd >= 0 && sent_ok;
    } else if (proto == "udp") {
      if (fd < 0 || fresh) {
        if (fd >= 0) close(fd);
        fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        bindSource(fd, ss.ss_family, src);
      }
      ok = sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) > 0;
      if (ok && replies && readable(fd, timeout_ms)) {
        char buf[9000];
        echoed = recv(fd, buf, sizeof buf, 0) > 0;
      }
    } else {
      if (fd < 0 || fresh) {
        if (fd >= 0) close(fd);
        fd = connectTcp(dst, port, timeout_ms, src);
      }
      ok = fd >= 0 && write(fd, msg.data(), msg.size()) == static_cast<ssize_t>(msg.size());
      if (ok && replies && readable(fd, timeout_ms)) {
        std::vector<char> buf(msg.size());
        size_t got = 0;
        while (got < msg.size() && readable(fd, timeout_ms)) {
          ssize_t n = read(fd, buf.data() + got, msg.size() - got);
          if (n <= 0) break;
          got += static_cast<size_t>(n);
        }
        echoed = got == msg.size();
      }
      if (!ok && fd >= 0) {
        close(fd);
        fd = -1;
      }
    }
    (ok ? sent : failed)++;
    replied += echoed;
    // Pace by absolute schedule so a slow send does not stretch the run.
    std::this_thread::sleep_until(start + std::chrono::milliseconds(interval_ms) * (seq + 1));
  }
  if (fd >= 0) close(fd);
  std::cout << "sent " << sent << " failed " << failed;
  if (replies || proto == "icmp") std::cout << " replied " << replied;
  std::cout << std::endl;
  return 0;
}

// One TCP transfer of `bytes`; prints the count the server confirmed.
int bulk(const std::string& dst, int port, uint64_t bytes, int timeout_ms) {
  int fd = connectTcp(dst, port, timeout_ms, "");
  if (fd < 0) {
    std::cout << "bulk failed: connect" << std::endl;
    return 1;
  }
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::vector<char> buf(1 << 16, 'b');
  uint64_t left = bytes;
  const auto t0 = std::chrono::steady_clock::now();
  while (left > 0) {
    ssize_t n = write(fd, buf.data(), std::min<uint64_t>(left, buf.size()));
    if (n <= 0) {
      std::cout << "bulk failed: write after " << bytes - left << " bytes" << std::endl;
      return 1;
    }
    left -= static_cast<uint64_t>(n);
  }
  shutdown(fd, SHUT_WR);
  char reply[64] = {};
  ssize_t n = read(fd, reply, sizeof reply - 1);
  close(fd);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "bulk confirmed " << (n > 0 ? std::strtoull(reply, nullptr, 10) : 0) << " of "
            << bytes << " in " << secs << " s" << std::endl;
  return 0;
}

// A VXLAN packet made by hand: outer UDP from this host to `to`:`port`;
// inside, an Ethernet frame to `dst_mac` carrying IPv4/UDP from `inner_src`
// to `inner_dst`:9000 with the payload "<tag> <seq>".
// See "streams" at the top.
int streams(const std::string& dst, int talk, int down, int udp, int seconds, int base_port) {
  using Clock = std::chrono::steady_clock;
  struct Flow {
    std::string kind;
    int fd = -1;
    bool failed = false;
    std::string why;
    Clock::time_point last_rx{};
    int64_t gap_ms = 0;
    std::string seen;  // UDP: the address:port the server saw first
    std::string buf;
  };
  std::vector<Flow> flows;
  auto bindPort = [&](int fd, int family, int i) {
    if (!base_port) return;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(static_cast<uint16_t>(base_port + i));
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(static_cast<uint16_t>(base_port + i));
      len = sizeof *a;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      std::cerr << "bind port " << base_port + i << ": " << strerror(errno) << std::endl;
      exit(2);
    }
  };
  socklen_t len;
  int index = 0;
  for (auto [kind, n] : {std::pair{std::string("talk"), talk}, {"down", down}}) {
    for (int i = 0; i < n; ++i, ++index) {
      auto ss = addrOf(dst, 9003, &len);
      int fd = socket(ss.ss_family, SOCK_STREAM, 0);
      bindPort(fd, ss.ss_family, index);
      if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        std::cerr << "connect: " << strerror(errno) << std::endl;
        return 1;
      }
      const std::string first = kind + " " + std::to_string(index) + "\n";
      (void)!write(fd, first.data(), first.size());
      fcntl(fd, F_SETFL, O_NONBLOCK);
      flows.push_back({kind, fd});
    }
  }
  for (int i = 0; i < udp; ++i, ++index) {
    auto ss = addrOf(dst, 9004, &len);
    int fd = socket(ss.ss_family, SOCK_DGRAM, 0);
    bindPort(fd, ss.ss_family, index);
    connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    flows.push_back({"udp", fd});
  }
  std::cout << "open " << flows.size() << std::endl;
  const auto start = Clock::now(), end = start + std::chrono::seconds(seconds);
  for (auto& f : flows) f.last_rx = start;
  auto next_send = start;
  while (Clock::now() < end) {
    const auto now = Clock::now();
    if (now >= next_send) {
      next_send += std::chrono::milliseconds(20);
      for (auto& f : flows) {
        if (f.failed || f.kind == "down") continue;
        const std::string line = f.kind + "\n";
        if (send(f.fd, line.data(), line.size(), MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
            errno != ECONNREFUSED) {
          f.failed = true;
          f.why = strerror(errno);
        }
      }
    }
    std::vector<pollfd> fds;
    for (auto& f : flows) fds.push_back({f.fd, POLLIN, 0});
    poll(fds.data(), fds.size(), 5);
    for (size_t i = 0; i < flows.size(); ++i) {
      auto& f = flows[i];
      if (f.failed || !(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      char buf[4096];
      ssize_t n = recv(f.fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EAGAIN || (f.kind == "udp" && errno == ECONNREFUSED))) continue;
      if (n <= 0) {
        f.failed = true;
        f.why = n == 0 ? "closed by the server" : strerror(errno);
        continue;
      }
      const auto t = Clock::now();
      f.gap_ms = std::max<int64_t>(
          f.gap_ms, std::chrono::duration_cast<std::chrono::milliseconds>(t - f.last_rx).count());
      f.last_rx = t;
      if (f.kind == "udp") {
        const std::string seen(buf, static_cast<size_t>(n));
        if (f.seen.empty())
          f.seen = seen;
        else if (seen != f.seen) {
          f.failed = true;
          f.why = "the server saw " + seen + " after " + f.seen;
        }
      }
    }
  }
  const auto stop = Clock::now();
  std::map<std::string, std::pair<int, int>> ok;  // kind → (survived, total)
  std::map<std::string, int64_t> gap;
  for (auto& f : flows) {
    const bool fresh = stop - f.last_rx < std::chrono::seconds(1);
    if (!f.failed && !fresh) f.why = "stalled";
    const bool survived = !f.failed && fresh;
    ok[f.kind].second++;
    ok[f.kind].first += survived;
    gap[f.kind] = std::max(gap[f.kind], f.gap_ms);
    if (!survived) std::cerr << f.kind << " flow lost: " << f.why << std::endl;
    close(f.fd);
  }
  for (const char* k : {"talk", "down", "udp"})
    std::cout << k << " " << ok[k].first << "/" << ok[k].second << " gap " << gap[k] << std::endl;
  return 0;
}

int vxlan(const std::string& to, int port, uint32_t vni, const std::string& dst_mac,
          const std::string& inner_src, const std::string& inner_dst, const std::string& tag,
          int count, const std::string& from) {
  socklen_t len;
  auto ss = addrOf(to, port, &len);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  bindSource(fd, AF_INET, from);
  unsigned m[6];
  if (std::sscanf(dst_mac.c_str(), "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) !=
      6)
    throw std::runtime_error("bad MAC " + dst_mac);
  in_addr src{}, dst{};
  if (inet_pton(AF_INET, inner_src.c_str(), &src) != 1 ||
      inet_pton(AF_INET, inner_dst.c_str(), &dst) != 1)
    throw std::runtime_error("bad inner address");
  int sent = 0;
  for (int seq = 0; seq < count; ++seq) {
    const std::string payload = tag + " " + std::to_string(seq) + "\n";
    std::vector<uint8_t> p(8 + 14 + 20 + 8 + payload.size(), 0);
    p[0] = 0x08;  // VXLAN: the VNI is valid
    p[4] = static_cast<uint8_t>(vni >> 16), p[5] = static_cast<uint8_t>(vni >> 8),
    p[6] = static_cast<uint8_t>(vni);
    uint8_t* eth = p.data() + 8;
    for (int i = 0; i < 6; ++i) eth[i] = static_cast<uint8_t>(m[i]);
    const uint8_t smac[6] = {0x02, 0, 0, 0, 0, 0x66};
    std::memcpy(eth + 6, smac, 6);
    eth[12] = 0x08, eth[13] = 0x00;
    uint8_t* ip = eth + 14;
    const size_t ip_len = 20 + 8 + payload.size();
    ip[0] = 0x45;
    ip[2] = static_cast<uint8_t>(ip_len >> 8), ip[3] = static_cast<uint8_t>(ip_len);
    ip[8] = 64;
    ip[9] = IPPROTO_UDP;
    std::memcpy(ip + 12, &src, 4);
    std::memcpy(ip + 16, &dst, 4);
    const uint16_t c = inetChecksum(ip, 20);
    ip[10] = static_cast<uint8_t>(c >> 8), ip[11] = static_cast<uint8_t>(c);
    uint8_t* udp = ip + 20;
    udp[0] = 0x9c, udp[1] = 0x40;  // source port 40000
    udp[2] = 9000 >> 8, udp[3] = 9000 & 0xff;
    const size_t udp_len = 8 + payload.size();
    udp[4] = static_cast<uint8_t>(udp_len >> 8), udp[5] = static_cast<uint8_t>(udp_len);
    std::memcpy(udp + 8, payload.data(), payload.size());  // checksum 0: none (IPv4)
    if (sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) > 0) ++sent;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  close(fd);
  std::cout << "sent " << sent << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsegress lab traffic tool"};
  app.require_subcommand(1);
  int udp_port = 9000, tcp_port = 9001, bulk_port = 9002;
  auto* s = app.add_subcommand("serve", "record the peer address of every message");
  s->add_option("--udp-port", udp_port);
  s->add_option("--tcp-port", tcp_port);
  s->add_option("--bulk-port", bulk_port);
  std::string proto = "udp", dst, tag = "msg", src;
  int port = 9000, count = 1, interval = 10, timeout = 1000, size = 0;
  bool fresh = false, replies = false;
  auto* c = app.add_subcommand("send", "send numbered messages");
  c->add_option("--proto", proto)->check(CLI::IsMember({"udp", "tcp", "icmp"}));
  c->add_option("--size", size, "payload bytes (padded)");
  c->add_flag("--replies", replies, "wait for and count each echo");
  c->add_option("--dst", dst)->required();
  c->add_option("--port", port);
  c->add_option("--count", count);
  c->add_option("--interval-ms", interval);
  c->add_option("--connect-timeout-ms", timeout);
  c->add_option("--tag", tag);
  c->add_flag("--fresh", fresh, "new socket (new flow) for every message");
  c->add_option("--src", src, "source address, even one that is not ours (a forging pod)");
  uint64_t bytes = 0;
  auto* b = app.add_subcommand("bulk", "one TCP transfer");
  b->add_option("--dst", dst)->required();
  b->add_option("--port", port);
  b->add_option("--bytes", bytes)->required();
  int talk = 0, down = 0, udp_flows = 0, seconds = 5, base_port = 0;
  auto* st = app.add_subcommand("streams", "long-lived flows; report how many survived");
  st->add_option("--dst", dst)->required();
  st->add_option("--talk", talk);
  st->add_option("--down", down);
  st->add_option("--udp", udp_flows);
  st->add_option("--seconds", seconds);
  st->add_option("--base-port", base_port, "bind source ports from here (collisions on purpose)");
  std::string to, dst_mac, inner_src, inner_dst;
  uint32_t vni = 0;
  auto* v = app.add_subcommand("vxlan", "send hand-made VXLAN packets");
  v->add_option("--to", to)->required();
  v->add_option("--port", port);
  v->add_option("--vni", vni)->required();
  v->add_option("--dst-mac", dst_mac)->required();
  v->add_option("--inner-src", inner_src)->required();
  v->add_option("--inner-dst", inner_dst)->required();
  v->add_option("--tag", tag);
  v->add_option("--count", count);
  v->add_option("--from", src, "outer source address");
  CLI11_PARSE(app, argc, argv);
  if (s->parsed()) return serve(udp_port, tcp_port, bulk_port);
  if (b->parsed()) return bulk(dst, port, bytes, timeout);
  if (st->parsed()) return streams(dst, talk, down, udp_flows, seconds, base_port);
  if (v->parsed()) return vxlan(to, port, vni, dst_mac, inner_src, inner_dst, tag, count, src);
  return send(proto, dst, port, count, interval, fresh, tag, timeout, src, size, replies);
}
