#include "lab.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "nsegress/gateway/state_source.h"

namespace nsegress::lab {

std::string labtoolPath() {
  return NSEGRESS_LABTOOL_BIN;
}
std::string gatewayPath() {
  return NSEGRESS_GATEWAY_BIN;
}
std::string controllerPath() {
  return NSEGRESS_CONTROLLER_BIN;
}
std::string ctlPath() {
  return NSEGRESS_CTL_BIN;
}

int run(const std::string& cmd, std::string* out) {
  // A subshell, so stderr of every command (and heredocs) is captured.
  FILE* p = popen(("(" + cmd + "\n) 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string buf;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) buf.append(chunk, n);
  int st = pclose(p);
  if (out) *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

std::string must(const std::string& cmd) {
  std::string out;
  int rc = run(cmd, &out);
  if (rc != 0)
    throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + cmd + "\n" + out);
  return out;
}

int cleanupAll() {
  std::string out;
  run("ip netns list", &out);
  std::istringstream in(out);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    auto name = line.substr(0, line.find(' '));
    if (name.rfind("nse-", 0) == 0) {
      run("ip netns pids " + name + " | xargs -r kill -9");
      run("ip netns del " + name);
      ++n;
    }
  }
  return n;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// ---- Process -----------------------------------------------------------------

Process::Process(std::vector<std::string> argv, std::string log) : log_(std::move(log)) {
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    kill(pid_, SIGKILL);
    wait();
  }
}

void Process::signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool Process::running() {
  if (status_ >= 0 || pid_ <= 0) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

int Process::wait() {
  if (status_ >= 0) return status_;
  int st;
  if (waitpid(pid_, &st, 0) == pid_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status_;
}

std::string Process::log() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- NetnsEnter --------------------------------------------------------------

NetnsEnter::NetnsEnter(const std::string& netns) {
  saved_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int fd = open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("setns " + netns + " failed");
  }
  close(fd);
}

NetnsEnter::~NetnsEnter() {
  if (saved_ >= 0) {
    setns(saved_, CLONE_NEWNET);
    close(saved_);
  }
}

// ---- Lab -----------------------------------------------------------------------

Lab::Lab(const std::string& tag, ClusterOptions cluster) : is_cluster_(true), cluster_(cluster) {
  prefix_ = "nse-" + tag + "-" + std::to_string(getpid()) + "-";
  char tmpl[] = "/tmp/nsegress-lab-XXXXXX";
  dir_ = mkdtemp(tmpl);
  try {
    buildCluster();
  } catch (...) {
    teardown();
    throw;
  }
}

int Lab::nodeIndex(const std::string& name) {
  for (int i = 0; i < 4; ++i)
    if (name == kNodes[i]) return i + 1;
  throw std::runtime_error("no node " + name);
}

std::string Lab::nodeIp(const std::string& name) {
  return "192.0.2.1" + std::to_string(nodeIndex(name));
}

void Lab::buildCluster() {
  auto mk = [&](const std::string& n) {
    must("ip netns add " + n);
    netns_.push_back(n);
    must("ip -n " + n + " link set lo up");
  };
  const std::string out = outside();
  mk(out);
  for (const char* br : {"br-up", "br-cl"}) {
    must("ip -n " + out + " link add " + br + " type bridge");
    must("ip -n " + out + " link set " + br + " up");
  }
  must("ip -n " + out + " addr add " + kOutsideIp + "/24 dev br-up");
  must("ip -n " + out + " addr add " + kOutsideIp6 + "/64 dev br-up nodad");
  must("ip -n " + out + " addr add 192.0.2.1/24 dev br-cl");
  must("ip -n " + out + " addr add fd00:c::1/64 dev br-cl nodad");
  must("ip -n " + out + " route add 203.0.113.0/24 dev br-up");
  must("ip -n " + out + " -6 route add fd00:e::/64 dev br-up");
  // The servers answer from the address they were reached at (their UDP
  // socket is not connected): the one address of the outside world.
  must("ip -n " + out + " route replace 192.0.2.0/24 dev br-cl src " + kOutsideIp);
  must("ip -n " + out + " -6 route replace fd00:c::/64 dev br-cl src " + kOutsideIp6 +
       " metric 256");
  for (const char* name : kNodes) {
    const std::string n = node(name);
    const std::string i = std::to_string(nodeIndex(name));
    const bool gateway = std::string(name).rfind("gw", 0) == 0;
    mk(n);
    for (const char* k : {"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                          // Strict reverse-path filtering, as many distributions ship it:
                          // nsegress loosens it on its own tunnel only.
                          "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"})
      must("ip netns exec " + n + " sysctl -qw " + k);
    must("ip -n " + n + " link add eth0 type veth peer name c-" + name + " netns " + out);
    must("ip -n " + out + " link set c-" + std::string(name) + " master br-cl up");
    must("ip -n " + n + " addr add 192.0.2.1" + i + "/24 dev eth0");
    must("ip -n " + n + " addr add fd00:c::1" + i + "/64 dev eth0 nodad");
    must("ip -n " + n + " link set eth0 up");
    if (gateway) {
      must("ip -n " + n + " link add " + kUplink + " type veth peer name u-" + name + " netns " +
           out);
      must("ip -n " + out + " link set u-" + std::string(name) + " master br-up up");
      must("ip -n " + n + " addr add 198.51.100.1" + i + "/24 dev " + kUplink);
      must("ip -n " + n + " addr add fd00:ff::1" + i + "/64 dev " + kUplink + " nodad");
      must("ip -n " + n + " link set " + kUplink + " up");
      must("ip -n " + n + " route add default via " + kOutsideIp);
      must("ip -n " + n + " -6 route add default via " + kOutsideIp6);
      // On an L2 underlay, replies to a gateway node's own steered pods come
      // back on the node interface while its default route is the uplink:
      // the operator loosens reverse-path filtering there (docs/install.md).
      if (!cluster_.tunnel)
        must("ip netns exec " + n + " sysctl -qw net.ipv4.conf.eth0.rp_filter=2");
    } else {
      must("ip -n " + n + " route add default via 192.0.2.1");
      must("ip -n " + n + " -6 route add default via fd00:c::1");
    }
    // The CNI: every other node's pod range via that node (host-gw), and
    // masquerade of pod traffic leaving the pod range.
    for (const char* other : kNodes) {
      if (std::string(other) == name) continue;
      const std::string j = std::to_string(nodeIndex(other));
      must("ip -n " + n + " route add 10.244." + j + ".0/24 via 192.0.2.1" + j);
      must("ip -n " + n + " -6 route add fd00:244:" + j + "::/64 via fd00:c::1" + j);
    }
    must("ip netns exec " + n + " " + cluster_.iptables +
         " -t nat -A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE");
    // IPv6: the kernels we run on lack ip6tables' MASQUERADE target; the
    // CNI's IPv6 masquerade is a native nftables rule at the same priority.
    must("ip netns exec " + n + " nft add table ip6 cni");
    must("ip netns exec " + n +
         " nft add chain ip6 cni post '{ type nat hook postrouting priority srcnat; }'");
    must("ip netns exec " + n +
         " nft add rule ip6 cni post ip6 saddr fd00:244::/32 ip6 daddr != fd00:244::/32 "
         "masquerade");
  }
  {
    // The bridges also hand the outside host copies of frames between the
    // nodes (to other MACs): only what is addressed to the host counts.
    auto mac = [&](const char* dev) {
      std::string m = must("ip netns exec " + out + " cat /sys/class/net/" + dev + "/address");
      return m.substr(0, m.find('\n'));
    };
    std::ofstream f(dir_ + "/observer.nft");
    f << "table inet obs {\n"
         "  set seen4 { type ipv4_addr; size 65535; flags dynamic; counter; }\n"
         "  set seen6 { type ipv6_addr; size 65535; flags dynamic; counter; }\n"
         "  chain pre { type filter hook prerouting priority -300; policy accept;\n"
         "    iifname \"br-cl\" ether daddr != "
      << mac("br-cl")
      << " return\n"
         "    iifname \"br-up\" ether daddr != "
      << mac("br-up")
      << " return\n"
         "    ip daddr { 198.51.100.2, 192.0.2.1 } update @seen4 { ip saddr }\n"
         "    ip6 daddr { fd00:ff::2, fd00:c::1 } meta l4proto { tcp, udp } update @seen6 { ip6 "
         "saddr }\n"
         "    ip6 daddr { fd00:ff::2, fd00:c::1 } icmpv6 type { echo-request, echo-reply } update "
         "@seen6 { ip6 saddr }\n"
         "  }\n"
         "}\n";
  }
  must("ip netns exec " + out + " nft -f " + dir_ + "/observer.nft");
}

void Lab::addPodOn(const std::string& nodename, const std::string& name, const std::string& ip,
                   const std::string& ip6) {
  const std::string ns = pod(name);
  const std::string n = node(nodename);
  must("ip netns add " + ns);
  netns_.push_back(ns);
  must("ip -n " + ns + " link set lo up");
  const std::string if_ = "p" + std::to_string(next_pod_++);
  must("ip -n " + n + " link add " + if_ + " type veth peer name eth0 netns " + ns);
  must("ip -n " + n + " link set " + if_ + " up");
  must("ip -n " + n + " addr add 169.254.1.1/32 dev " + if_);
  must("ip -n " + n + " route add " + ip + "/32 dev " + if_);
  must("ip -n " + ns + " addr add " + ip + "/32 dev eth0");
  must("ip -n " + ns + " link set eth0 up");
  must("ip -n " + ns + " route add 169.254.1.1 dev eth0");
  must("ip -n " + ns + " route add default via 169.254.1.1");
  must("ip -n " + n + " addr add fe80::1/64 dev " + if_ + " nodad");
  must("ip -n " + n + " -6 route add " + ip6 + "/128 dev " + if_);
  must("ip -n " + ns + " addr add " + ip6 + "/128 dev eth0 nodad");
  must("ip -n " + ns + " -6 route add default via fe80::1 dev eth0");
}

Process& Lab::startNodeAgent(const std::string& name, std::vector<std::string> extra) {
  const bool gateway = name.rfind("gw", 0) == 0;
  std::vector<std::string> argv = {gatewayPath(),
                                   "--uplink",
                                   gateway ? kUplink : "eth0",
                                   "--underlay",
                                   "eth0",
                                   "--steer",
                                   cluster_.tunnel ? "tunnel" : "l2",
                                   "--state-file",
                                   nodeStatePath(name),
                                   "--cluster-cidr",
                                   "10.244.0.0/16",
                                   "--cluster-cidr",
                                   "fd00:244::/32",
                                   "--resync-seconds",
                                   "1",
                                   "--garp-interval-ms",
                                   "50"};
  if (gateway) argv.push_back("--uplink-dedicated");
  argv.insert(argv.end(), extra.begin(), extra.end());
  return spawn(node(name), argv, "agent-" + name + "-" + std::to_string(procs_.size()) + ".log");
}

std::string Lab::payManifests(const std::vector<PodSpec>& pods) {
  std::string y = R"(apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: dmz}
spec:
  addresses: ["203.0.113.10-203.0.113.19"]
  nodeSelector: {matchLabels: {nsegress.io/gateway: "true"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: pay, annotations: {nsegress.io/pool: dmz}}
)";
  for (const auto& p : pods)
    y += "---\napiVersion: v1\nkind: Pod\nmetadata: {name: " + p.name +
         ", namespace: pay}\nspec: {nodeName: " + p.node +
         "}\nstatus: {phase: Running, podIPs: [{ip: " + p.ip + "}]}\n";
  return y;
}

std::string Lab::prepareFailover(const std::vector<PodSpec>& pods) {
  const std::string key = dir() + "/peer.key";
  std::ofstream(key) << "lab-peer-key-0123456789abcdef\n";
  // The upstream router keeps its neighbour entries for hours: only an
  // announcement moves them (as the switches of ovn-kubernetes#6553 did).
  exec(outside(),
       "sysctl -qw net.ipv4.neigh.br-up.base_reachable_time_ms=14400000 "
       "net.ipv4.neigh.br-up.gc_stale_time=14400");
  writeManifest("00-nodes.yaml", nodeManifests());
  writeManifest("10-pay.yaml", payManifests(pods));
  return key;
}

std::string Lab::nodeManifests() {
  std::string out;
  for (const char* name : kNodes) {
    const bool gateway = std::string(name).rfind("gw", 0) == 0;
    const std::string i = std::to_string(nodeIndex(name));
    out += std::string("apiVersion: v1\nkind: Node\nmetadata:\n  name: ") + name + "\n" +
           (gateway ? "  labels: {nsegress.io/gateway: \"true\"}\n" : "") +
           "status:\n  conditions: [{type: Ready, status: \"True\"}]\n"
           "  addresses: [{type: InternalIP, address: 192.0.2.1" +
           i + "}, {type: InternalIP, address: \"fd00:c::1" + i + "\"}]\n---\n";
  }
  return out;
}

Lab::Lab(const std::string& tag) {
  prefix_ = "nse-" + tag + "-" + std::to_string(getpid()) + "-";
  char tmpl[] = "/tmp/nsegress-lab-XXXXXX";
  dir_ = mkdtemp(tmpl);
  try {
    build();
  } catch (...) {
    teardown();  // a destructor does not run for a half-built object
    throw;
  }
}

void Lab::build() {
  auto mk = [&](const std::string& n) {
    must("ip netns add " + n);
    netns_.push_back(n);
    must("ip -n " + n + " link set lo up");
  };
  mk(gw());
  mk(outside());
  must("ip -n " + gw() + " link add " + kUplink + " type veth peer name eth0 netns " + outside());
  must("ip -n " + gw() + " addr add " + kGwUplinkIp + "/24 dev " + kUplink);
  must("ip -n " + gw() + " link set " + kUplink + " up");
  must("ip -n " + outside() + " addr add " + kOutsideIp + "/24 dev eth0");
  must("ip -n " + outside() + " link set eth0 up");
  // Egress addresses are resolved on-link, with ARP (IPv6: neighbour
  // discovery), like a real upstream.
  must("ip -n " + outside() + " route add 203.0.113.0/24 dev eth0");
  must("ip -n " + gw() + " route add default via " + kOutsideIp);
  must("ip -n " + gw() + " addr add " + kGwUplinkIp6 + "/64 dev " + kUplink + " nodad");
  must("ip -n " + outside() + " addr add " + kOutsideIp6 + "/64 dev eth0 nodad");
  must("ip -n " + outside() + " -6 route add fd00:e::/64 dev eth0");
  must("ip -n " + gw() + " -6 route add default via " + kOutsideIp6);
  for (const char* k : {"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                        "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.all.forwarding=1"})
    must("ip netns exec " + gw() + " sysctl -qw " + k);
  // Observer: every source address that reaches the outside host.
  {
    std::ofstream f(dir_ + "/observer.nft");
    f << "table inet obs {\n"
         "  set seen4 { type ipv4_addr; size 65535; flags dynamic; counter; }\n"
         "  set seen6 { type ipv6_addr; size 65535; flags dynamic; counter; }\n"
         "  chain pre { type filter hook prerouting priority -300; policy accept;\n"
         "    meta nfproto ipv4 update @seen4 { ip saddr }\n"
         "    meta nfproto ipv6 meta l4proto { tcp, udp } update @seen6 { ip6 saddr }\n"
         "  }\n"
         "}\n";
  }
  must("ip netns exec " + outside() + " nft -f " + dir_ + "/observer.nft");
}

Lab::~Lab() {
  teardown();
}

void Lab::teardown() {
  procs_.clear();  // kills
  for (const auto& n : netns_) {
    run("ip netns pids " + n + " | xargs -r kill -9");
    run("ip netns del " + n);
  }
  netns_.clear();
  if (!dir_.empty()) run("rm -rf " + dir_);
  dir_.clear();
}

void Lab::addPod(const std::string& name, const std::string& ip, const std::string& ip6) {
  const std::string ns = pod(name);
  must("ip netns add " + ns);
  netns_.push_back(ns);
  must("ip -n " + ns + " link set lo up");
  const std::string gw_if = "p" + std::to_string(next_pod_++);
  must("ip -n " + gw() + " link add " + gw_if + " type veth peer name eth0 netns " + ns);
  must("ip -n " + gw() + " link set " + gw_if + " up");
  must("ip -n " + gw() + " addr add 169.254.1.1/32 dev " + gw_if);
  must("ip -n " + gw() + " route add " + ip + "/32 dev " + gw_if);
  must("ip -n " + ns + " addr add " + ip + "/32 dev eth0");
  must("ip -n " + ns + " link set eth0 up");
  must("ip -n " + ns + " route add 169.254.1.1 dev eth0");
  must("ip -n " + ns + " route add default via 169.254.1.1");
  if (!ip6.empty()) {
    must("ip -n " + gw() + " addr add fe80::1/64 dev " + gw_if + " nodad");
    must("ip -n " + gw() + " -6 route add " + ip6 + "/128 dev " + gw_if);
    must("ip -n " + ns + " addr add " + ip6 + "/128 dev eth0 nodad");
    must("ip -n " + ns + " -6 route add default via fe80::1 dev eth0");
  }
}

std::string Lab::exec(const std::string& netns, const std::string& cmd) {
  return must("ip netns exec " + netns + " " + cmd);
}

Process& Lab::spawn(const std::string& netns, std::vector<std::string> argv,
                    const std::string& log_name) {
  std::vector<std::string> full = {"/usr/bin/ip", "netns", "exec", netns};
  full.insert(full.end(), argv.begin(), argv.end());
  procs_.push_back(std::make_unique<Process>(std::move(full), dir_ + "/" + log_name));
  return *procs_.back();
}

void Lab::startServers() {
  server_ = &spawn(outside(), {labtoolPath(), "serve"}, "server.log");
  if (!eventually([&] { return server_->log().find("ready") != std::string::npos; }))
    throw std::runtime_error("lab server did not start: " + server_->log());
}

std::vector<std::string> Lab::serverLines() const {
  std::vector<std::string> out;
  if (!server_) return out;
  std::istringstream in(server_->log());
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("udp ", 0) == 0 || line.rfind("tcp ", 0) == 0 || line.rfind("bulk ", 0) == 0)
      out.push_back(line);
  return out;
}

std::set<std::string> Lab::peersOf(const std::string& tag) const {
  std::set<std::string> out;
  for (const auto& l : serverLines()) {
    std::istringstream in(l);
    std::string proto, peer, t;
    in >> proto >> peer >> t;
    if (t == tag) out.insert(peer);
  }
  return out;
}

std::set<std::pair<std::string, uint16_t>> Lab::portsOf(const std::string& tag) const {
  std::set<std::pair<std::string, uint16_t>> out;
  if (!server_) return out;
  std::istringstream in(server_->log());
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("sport ", 0) != 0) continue;
    std::istringstream l(line);
    std::string word, proto, peer, t;
    unsigned port = 0;
    l >> word >> proto >> peer >> port >> t;
    if (t == tag) out.emplace(peer, static_cast<uint16_t>(port));
  }
  return out;
}

std::map<std::string, uint64_t> Lab::seenSources() {
  std::map<std::string, uint64_t> out;
  for (const char* set_name : {"seen4", "seen6"}) {
    auto j = nlohmann::json::parse(
        must("ip netns exec " + outside() + " nft -j list set inet obs " + set_name));
    for (const auto& item : j["nftables"]) {
      if (!item.contains("set")) continue;
      const auto& set = item["set"];
      if (!set.contains("elem")) continue;
      for (const auto& e : set["elem"]) {
        if (e.is_string()) {
          out[e.get<std::string>()] += 1;
        } else if (e.contains("elem")) {
          const auto& el = e["elem"];
          uint64_t pk = el.contains("counter") ? el["counter"]["packets"].get<uint64_t>() : 1;
          out[el["val"].get<std::string>()] += pk;
        }
      }
    }
  }
  return out;
}

void Lab::clearSeen() {
  must("ip netns exec " + outside() + " nft flush set inet obs seen4");
  must("ip netns exec " + outside() + " nft flush set inet obs seen6");
}

std::string Lab::send(const std::string& p, const std::string& proto, const std::string& tag,
                      int count, int interval_ms, bool fresh, int timeout_ms,
                      const std::string& dst, const std::string& src, int size, bool replies) {
  std::string cmd = "ip netns exec " + pod(p) + " " + labtoolPath() + " send --proto " + proto +
                    " --dst " + (dst.empty() ? std::string(kOutsideIp) : dst) + " --port " +
                    (proto == "udp" ? "9000" : "9001") + " --tag " + tag + " --count " +
                    std::to_string(count) + " --interval-ms " + std::to_string(interval_ms) +
                    " --connect-timeout-ms " + std::to_string(timeout_ms) +
                    (fresh ? " --fresh" : "") + (src.empty() ? "" : " --src " + src) +
                    (size ? " --size " + std::to_string(size) : "") + (replies ? " --replies" : "");
  return must(cmd);
}

std::string Lab::bulk(const std::string& p, const std::string& dst, uint64_t bytes) {
  std::string out;
  run("ip netns exec " + pod(p) + " " + labtoolPath() + " bulk --dst " + dst +
          " --port 9002 --bytes " + std::to_string(bytes),
      &out);
  return out;
}

Process& Lab::startGateway(const std::string& state_file, std::vector<std::string> extra) {
  std::vector<std::string> argv = {gatewayPath(), "--uplink",         kUplink, "--state-file",
                                   state_file,    "--resync-seconds", "1",     "--garp-interval-ms",
                                   "50"};
  // The single-gateway lab has no nodes: the gateway-only data path (the
  // cluster lab tests steering).
  argv.push_back("--steer");
  argv.push_back("off");
  argv.insert(argv.end(), extra.begin(), extra.end());
  return spawn(gw(), argv, "gateway-" + std::to_string(procs_.size()) + ".log");
}

Process& Lab::startController(std::vector<std::string> extra) {
  std::filesystem::create_directories(manifestDir());
  std::vector<std::string> argv = {controllerPath(),
                                   "--manifests",
                                   manifestDir(),
                                   "--ledger",
                                   dir_ + "/ledger.db",
                                   "--init-ledger",  // the lab's own, new ledger
                                   "--gateway-state-dir",
                                   gatewayStateDir(),
                                   "--listen",
                                   "127.0.0.1:8080",
                                   "--resync-seconds",
                                   "1"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto& p = spawn(controlNs(), argv, "controller-" + std::to_string(procs_.size()) + ".log");
  if (!eventually([&] { return p.log().find("started") != std::string::npos; }))
    throw std::runtime_error("controller did not start: " + p.log());
  return p;
}

void Lab::writeManifest(const std::string& name, const std::string& yaml) {
  std::filesystem::create_directories(manifestDir());
  auto r = writeFileAtomically(manifestDir() + "/" + name, yaml);
  if (!r) throw std::runtime_error(r.error().message);
}

void Lab::removeManifest(const std::string& name) {
  std::filesystem::remove(manifestDir() + "/" + name);
}

std::string Lab::ctl(const std::string& args) {
  std::string out;
  run("ip netns exec " + controlNs() + " " + ctlPath() + " --server 127.0.0.1:8080 " + args, &out);
  return out;
}

void Lab::writeState(const std::string& json) {
  auto r = gateway::writeFileAtomically(statePath(), json);
  if (!r) throw std::runtime_error(r.error().message);
}

}  // namespace nsegress::lab
