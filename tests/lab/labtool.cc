// nsegress-labtool: traffic for the lab (tests, demo). Sends and receives only
// to addresses given on the command line, inside the lab's namespaces.
//   serve  --udp-port P --tcp-port P        print "udp|tcp <peer> <payload>" per message
//   send   --proto udp|tcp --dst A --port P  send "<tag> <seq>" messages
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
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

int serve(int udp_port, int tcp_port) {
  int u = listenOn(SOCK_DGRAM, udp_port);
  int t = listenOn(SOCK_STREAM, tcp_port);
  struct Conn {
    std::string peer;
    std::string buf;
  };
  std::map<int, Conn> conns;
  std::cout << "ready" << std::endl;
  for (;;) {
    std::vector<pollfd> fds = {{u, POLLIN, 0}, {t, POLLIN, 0}};
    for (auto& [fd, _] : conns) fds.push_back({fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents & POLLIN) {
      char buf[2048];
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      ssize_t n = recvfrom(u, buf, sizeof buf - 1, 0, reinterpret_cast<sockaddr*>(&ss), &sl);
      if (n >= 0) {
        buf[n] = 0;
        std::string msg(buf);
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
        std::cout << "udp " << peerStr(ss) << " " << msg << std::endl;
        sendto(u, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&ss), sl);  // echo
      }
    }
    if (fds[1].revents & POLLIN) {
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      int c = accept(t, reinterpret_cast<sockaddr*>(&ss), &sl);
      if (c >= 0) conns[c] = Conn{peerStr(ss), {}};
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

int send(const std::string& proto, const std::string& dst, int port, int count, int interval_ms,
         bool fresh, const std::string& tag, int timeout_ms, const std::string& src) {
  int sent = 0, failed = 0;
  int fd = -1;
  socklen_t len;
  auto ss = addrOf(dst, port, &len);
  const auto start = std::chrono::steady_clock::now();
  for (int seq = 0; seq < count; ++seq) {
    std::string msg = tag + " " + std::to_string(seq) + "\n";
    bool ok = false;
    if (proto == "udp") {
      if (fd < 0 || fresh) {
        if (fd >= 0) close(fd);
        fd = socket(ss.ss_family, SOCK_DGRAM, 0);
        bindSource(fd, ss.ss_family, src);
      }
      ok = sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) > 0;
    } else {
      if (fd < 0 || fresh) {
        if (fd >= 0) close(fd);
        fd = connectTcp(dst, port, timeout_ms, src);
      }
      ok = fd >= 0 && write(fd, msg.data(), msg.size()) == static_cast<ssize_t>(msg.size());
      if (!ok && fd >= 0) {
        close(fd);
        fd = -1;
      }
    }
    (ok ? sent : failed)++;
    // Pace by absolute schedule so a slow send does not stretch the run.
    std::this_thread::sleep_until(start + std::chrono::milliseconds(interval_ms) * (seq + 1));
  }
  if (fd >= 0) close(fd);
  std::cout << "sent " << sent << " failed " << failed << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsegress lab traffic tool"};
  app.require_subcommand(1);
  int udp_port = 9000, tcp_port = 9001;
  auto* s = app.add_subcommand("serve", "record the peer address of every message");
  s->add_option("--udp-port", udp_port);
  s->add_option("--tcp-port", tcp_port);
  std::string proto = "udp", dst, tag = "msg", src;
  int port = 9000, count = 1, interval = 10, timeout = 1000;
  bool fresh = false;
  auto* c = app.add_subcommand("send", "send numbered messages");
  c->add_option("--proto", proto)->check(CLI::IsMember({"udp", "tcp"}));
  c->add_option("--dst", dst)->required();
  c->add_option("--port", port);
  c->add_option("--count", count);
  c->add_option("--interval-ms", interval);
  c->add_option("--connect-timeout-ms", timeout);
  c->add_option("--tag", tag);
  c->add_flag("--fresh", fresh, "new socket (new flow) for every message");
  c->add_option("--src", src, "source address, even one that is not ours (a forging pod)");
  CLI11_PARSE(app, argc, argv);
  if (s->parsed()) return serve(udp_port, tcp_port);
  return send(proto, dst, port, count, interval, fresh, tag, timeout, src);
}
