// A lab of network namespaces for privileged tests, the demo and benchmarks:
//
//   pod netns (one per pod) --veth--+
//                                   gw netns --veth (uplink "up0")-- outside netns
//   pod netns ---------------------+  198.51.100.1/24          198.51.100.2/24
//                                      fd00:ff::1/64            fd00:ff::2/64
//
// Pods have a /32 address and a default route via 169.254.1.1 on the gateway
// (the routed model of Calico and others), optionally a /128 with a default
// route via fe80::1. The outside host routes 203.0.113.0/24 and fd00:e::/64
// on-link to the uplink, so it resolves egress addresses with ARP and
// neighbour discovery like a real upstream router. Nothing here touches the
// host namespace.
//
// Every namespace is named "nse-<tag>-<pid>-<role>"; the destructor removes
// them all, and `cleanupAll()` removes leftovers of crashed runs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace nsegress::lab {

// Runs a shell command; returns its exit status and captures stdout.
int run(const std::string& cmd, std::string* out = nullptr);
// Runs a shell command and throws if it fails.
std::string must(const std::string& cmd);

// Deletes every namespace whose name starts with "nse-" (crashed runs).
int cleanupAll();

bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

class Process {
 public:
  // argv[0] is an absolute path. stdout and stderr go to `log`.
  Process(std::vector<std::string> argv, std::string log);
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  void signal(int sig);
  int wait();  // exit status (128+sig if killed)
  bool running();
  pid_t pid() const { return pid_; }
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::string log_;
  int status_ = -1;
};

// Enters a network namespace for the calling thread; restores on destruction.
class NetnsEnter {
 public:
  explicit NetnsEnter(const std::string& netns);
  ~NetnsEnter();
  NetnsEnter(const NetnsEnter&) = delete;

 private:
  int saved_ = -1;
};

// The cluster lab (Lab::Cluster): four nodes and an outside host.
//
//   outside (router, servers, observer)
//     br-up 198.51.100.2/24 fd00:ff::2/64: the gateways' uplinks; egress
//           addresses (203.0.113.0/24, fd00:e::/64) resolved on-link
//     br-cl 192.0.2.1/24 fd00:c::1/64: the nodes' network and the workers'
//           default route (what leaves a worker unsteered is seen as the
//           worker's address)
//   nodes gw1 gw2 w1 w2 (index n = 1..4): eth0 192.0.2.1n/24 fd00:c::1n/64;
//           gateways also up0 198.51.100.1n/24 fd00:ff::1n/64 (default route)
//   pods on node n: 10.244.n.x/32, fd00:244:n::x/128 (ranges 10.244.0.0/16, fd00:244::/32); a CNI
//   of the host-gw
//           kind routes each node's pod range via its node, and every node
//           masquerades pod traffic leaving the pod range (iptables-nft or
//           iptables-legacy), as Flannel and Calico do by default.
struct ClusterOptions {
  bool tunnel = true;                     // agents steer over VXLAN (else: an L2 next hop)
  std::string iptables = "iptables-nft";  // the masquerade: iptables-nft | iptables-legacy
};

class Lab {
 public:
  static constexpr const char* kUplink = "up0";
  static constexpr const char* kGwUplinkIp = "198.51.100.1";
  static constexpr const char* kOutsideIp = "198.51.100.2";
  static constexpr const char* kGwUplinkIp6 = "fd00:ff::1";
  static constexpr const char* kOutsideIp6 = "fd00:ff::2";  // routes fd00:e::/64 on-link

  explicit Lab(const std::string& tag);
  Lab(const std::string& tag, ClusterOptions cluster);
  ~Lab();
  Lab(const Lab&) = delete;

  std::string gw() const { return prefix_ + "gw"; }
  std::string outside() const { return prefix_ + "out"; }
  std::string pod(const std::string& name) const { return prefix_ + name; }
  const std::string& dir() const { return dir_; }

  // A pod namespace attached to the gateway with address `ip` (IPv4) and,
  // if given, `ip6` (default route via fe80::1 on the gateway side).
  void addPod(const std::string& name, const std::string& ip, const std::string& ip6 = "");
  // Cluster lab: nodes, their pods, their agents.
  static constexpr const char* kNodes[] = {"gw1", "gw2", "w1", "w2"};
  std::string node(const std::string& name) const { return prefix_ + name; }
  static int nodeIndex(const std::string& name);
  static std::string nodeIp(const std::string& name);  // 192.0.2.1n
  void addPodOn(const std::string& node, const std::string& name, const std::string& ip,
                const std::string& ip6);
  // The agent of `node`, reading gatewayStateDir()/<node>.json.
  Process& startNodeAgent(const std::string& node, std::vector<std::string> extra = {});
  std::string nodeStatePath(const std::string& node) const {
    return gatewayStateDir() + "/" + node + ".json";
  }
  // The Node objects of the cluster lab (gateways labelled nsegress.io/gateway).
  static std::string nodeManifests();
  // Failover labs (tests, demo, bench): pool dmz (203.0.113.10-19 on the
  // gateway nodes), namespace pay and its pods (name, node, IPv4); and the
  // set-up they share: the nodes' manifests, a peer key file (returned), the
  // outside router keeping its neighbour entries for hours.
  struct PodSpec {
    std::string name, node, ip;
  };
  static std::string payManifests(const std::vector<PodSpec>& pods);
  std::string prepareFailover(const std::vector<PodSpec>& pods);
  const ClusterOptions& clusterOptions() const { return cluster_; }
  // Moves a pod to a new address (as after a pod restart).
  std::string exec(const std::string& netns, const std::string& cmd);

  // Processes, killed by the destructor.
  Process& spawn(const std::string& netns, std::vector<std::string> argv,
                 const std::string& log_name);

  // Outside host: labtool servers (UDP 9000, TCP 9001) recording peers.
  void startServers();
  // Lines "udp|tcp <peer> <payload>" the servers have printed so far.
  std::vector<std::string> serverLines() const;
  // Peers of the server lines whose payload starts with `tag`.
  std::set<std::string> peersOf(const std::string& tag) const;
  // (peer address, source port) of the server lines whose payload is `tag`.
  std::set<std::pair<std::string, uint16_t>> portsOf(const std::string& tag) const;
  // Source addresses (with packet counts) of every IPv4 packet that reached
  // the outside host since the last clearSeen().
  std::map<std::string, uint64_t> seenSources();
  void clearSeen();

  // Runs labtool send in a pod and returns its summary line.
  // `dst` defaults to kOutsideIp (kOutsideIp6 for IPv6).
  // `src`: send from that address even if it is not the pod's (forging).
  std::string send(const std::string& pod, const std::string& proto, const std::string& tag,
                   int count, int interval_ms, bool fresh = false, int timeout_ms = 1000,
                   const std::string& dst = "", const std::string& src = "", int size = 0,
                   bool replies = false);
  // One TCP transfer of `bytes` from a pod to the outside host's bulk sink.
  std::string bulk(const std::string& pod, const std::string& dst, uint64_t bytes);

  // The gateway agent, started in the gw namespace.
  Process& startGateway(const std::string& state_file, std::vector<std::string> extra = {});
  std::string statePath() const { return dir_ + "/desired.json"; }

  // The controller (standalone) in the gw namespace: manifests in
  // manifestDir(), ledger in dir()/ledger.db, gateway state in
  // gatewayStateDir()/<node>.json, API on 127.0.0.1:8080 of the gw namespace.
  Process& startController(std::vector<std::string> extra = {});
  std::string manifestDir() const { return dir_ + "/manifests"; }
  std::string gatewayStateDir() const { return dir_ + "/gateway-state"; }
  void writeManifest(const std::string& name, const std::string& yaml);
  void removeManifest(const std::string& name);
  // Runs nsegressctl against the lab's controller; returns its output.
  std::string ctl(const std::string& args);
  void writeState(const std::string& json);

 private:
  void build();
  void buildCluster();
  void teardown();
  std::string controlNs() const { return is_cluster_ ? outside() : gw(); }
  bool is_cluster_ = false;
  ClusterOptions cluster_;
  std::string prefix_;
  std::string dir_;
  std::vector<std::string> netns_;
  std::vector<std::unique_ptr<Process>> procs_;
  Process* server_ = nullptr;
  int next_pod_ = 0;
};

std::string labtoolPath();
std::string gatewayPath();
std::string controllerPath();
std::string ctlPath();

}  // namespace nsegress::lab
