// nsegress-gateway: the node agent. Thin main: parse flags, open the real
// kernel interfaces (netlink/), run the agent loop (gateway/).
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <thread>

#include <csignal>

#include "nsegress/gateway/agent.h"
#include "nsegress/gateway/ct_sync.h"
#include "nsegress/gateway/failover.h"
#include "nsegress/gateway/flow_log.h"
#include "nsegress/gateway/kube_source.h"
#include "nsegress/http/server.h"
#include "nsegress/kube/client.h"
#include "nsegress/netlink/address.h"
#include "nsegress/netlink/conntrack.h"
#include "nsegress/netlink/ct_sync.h"
#include "nsegress/netlink/fence.h"
#include "nsegress/netlink/nft.h"
#include "nsegress/netlink/routes.h"

using namespace nsegress;

namespace {

int cleanup(netlink::NftTable& nft, netlink::UplinkAddresses& addrs, netlink::Conntrack& ct,
            netlink::SteerRoutes* routes) {
  if (routes) {
    if (auto r = routes->destroyAll(); !r) {
      spdlog::error("cleanup: {}", r.error().message);
      return 1;
    }
    spdlog::info("cleanup: steering rules, routes, next hops and tunnel removed");
  }
  auto obs = nft.observe();
  if (!obs) {
    spdlog::error("cleanup: {}", obs.error().message);
    return 1;
  }
  int rc = 0;
  for (const auto& a : obs->owned) {
    if (auto r = addrs.remove(a); !r) {
      spdlog::error("cleanup: {}", r.error().message);
      rc = 1;
    }
    auto n = ct.flush(gateway::ConntrackFlush{"", a, {}});
    spdlog::info("cleanup: removed {} ({} flows flushed)", a.str(), n ? *n : 0);
  }
  if (auto r = nft.destroy(); !r) {
    spdlog::error("cleanup: {}", r.error().message);
    return 1;
  }
  spdlog::info("cleanup: table {} removed", nft.config().table);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsegress-gateway: per-namespace egress SNAT with nftables"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  std::string uplink, state_file, table = "nsegress", metrics_addr, log_level = "info";
  int resync_s = 10, garp_count = 3, garp_interval_ms = 200;
  bool once = false, do_cleanup = false, kubernetes = false, accept_inbound = false;
  std::string kubeconfig, node_name, steer = "tunnel", underlay;
  std::vector<std::string> cluster_cidrs;
  bool uplink_dedicated = false;
  gateway::SteerConfig steer_cfg;
  std::string peer_key_file, lease_server, controller_ns = "nsegress-system";
  int peer_port = 4794, lease_ms = 500, promise_ms = 500, ct_sync_port = 4796;
  bool no_ct_sync = false;
  size_t ct_sync_max = 262144;
  if (const char* n = std::getenv("NODE_NAME")) node_name = n;
  app.add_option("--uplink", uplink,
                 "Interface egress traffic leaves by (required but with --who)");
  app.add_option("--state-file", state_file, "Desired-state JSON file (watched for changes)");
  app.add_flag("--kubernetes", kubernetes,
               "Derive the desired state from the Kubernetes API (EgressIPs, Namespaces, Pods)");
  app.add_option("--kubeconfig", kubeconfig,
                 "kubeconfig for --kubernetes (default: $KUBECONFIG, ~/.kube/config, in-cluster)");
  app.add_option("--node-name", node_name, "This node's name in the cluster (default: $NODE_NAME)");
  app.add_option("--table", table, "nftables table (family inet) owned by nsegress");
  app.add_option("--metrics-address", metrics_addr, "host:port for /metrics (empty: off)");
  app.add_option("--resync-seconds", resync_s, "Full reconcile period (repairs drift)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--garp-count", garp_count, "Gratuitous ARPs sent per added address")
      ->check(CLI::Range(0, 20));
  app.add_option("--garp-interval-ms", garp_interval_ms, "Spacing of gratuitous ARPs")
      ->check(CLI::Range(10, 10000));
  app.add_flag("--egress-accepts-inbound", accept_inbound,
               "Let egress addresses accept new inbound connections (default: replies only; new "
               "inbound connections are dropped and counted)");
  app.add_option("--steer", steer,
                 "Steer this node's pods of namespaces hosted on another node to it: tunnel "
                 "(VXLAN; nodes on any subnets), l2 (a direct next hop; nodes on one segment) or "
                 "off")
      ->check(CLI::IsMember({"tunnel", "l2", "off"}));
  app.add_option("--underlay", underlay,
                 "The node's interface towards the other nodes (default: the uplink)");
  app.add_option("--tunnel-port", steer_cfg.port, "UDP port of the steering tunnel")
      ->check(CLI::Range(1, 65535));
  app.add_option("--tunnel-vni", steer_cfg.vni, "VXLAN network identifier of the tunnel")
      ->check(CLI::Range(1, 16777215));
  app.add_option("--cluster-cidr", cluster_cidrs,
                 "Destinations inside the cluster (pod and service CIDRs; repeatable): never "
                 "steered, never held fail-closed");
  app.add_flag("--uplink-dedicated", uplink_dedicated,
               "The uplink faces only the outside world: packets arriving on it with a pod's "
               "address are dropped and counted");
  app.add_option("--peer-key", peer_key_file,
                 "Failover (docs/architecture.md): the file holding the key shared by every node "
                 "and the lease server; enables the ownership protocol and the kernel fence");
  app.add_option("--peer-port", peer_port, "UDP port of the ownership protocol on every node")
      ->check(CLI::Range(1, 65535));
  app.add_option("--lease-server", lease_server,
                 "host:port (IPv4) of the lease server (the standalone controller's "
                 "--lease-listen). With --kubernetes and without it: the controller leader's, "
                 "as its Endpoints list it");
  app.add_option("--controller-namespace", controller_ns,
                 "With --kubernetes --peer-key: namespace of the controller's Service, "
                 "Endpoints and ownership Leases");
  app.add_option("--lease-ms", lease_ms, "Lease length (must match the lease server's)")
      ->check(CLI::Range(100, 60000));
  app.add_option("--promise-ms", promise_ms,
                 "How long a standby promises not to take over after a heartbeat (its failure "
                 "detection time)")
      ->check(CLI::Range(100, 60000));
  app.add_option("--ct-sync-port", ct_sync_port,
                 "UDP port of conntrack sync on every node (with --peer-key)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--ct-sync-max-flows", ct_sync_max,
                 "Flows a standby holds for the addresses it stands by for (beyond: counted "
                 "in nsegress_gateway_ct_sync_loss_total{where=\"cache\"})")
      ->check(CLI::Range(1, 16 << 20));
  app.add_flag("--no-ct-sync", no_ct_sync,
               "Failover without conntrack sync (established flows of a failed gateway are "
               "not carried over)");
  std::string flow_log_dir, who_addr, who_at, who_dst;
  int64_t flow_log_retention_h = 7 * 24;
  uint64_t flow_log_max_mb = 1024;
  app.add_option("--flow-log", flow_log_dir,
                 "Directory of the flow log (attribution by flow for pools without port blocks): "
                 "conntrack NEW/DESTROY events of this node's egress addresses, hourly segments");
  app.add_option("--flow-log-retention-hours", flow_log_retention_h,
                 "Flow log segments older than this are deleted")
      ->check(CLI::Range(int64_t{1}, int64_t{24 * 366}));
  app.add_option("--flow-log-max-mb", flow_log_max_mb,
                 "And the oldest while the flow log is larger than this")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 30));
  app.add_option("--who", who_addr,
                 "With --flow-log: print which pods' flows held ADDRESS:PORT (at --at) and exit");
  auto* at_opt = app.add_option("--at", who_at,
                                "With --who: Unix time (seconds) or RFC 3339 UTC; default now");
  app.add_option("--to", who_dst, "With --who: only flows to this destination ADDRESS:PORT");
  app.add_flag("--once", once, "Reconcile once and exit (status 0 on success)");
  app.add_flag("--cleanup", do_cleanup,
               "Remove the table, owned addresses and their flows, then exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ gateway: %v");
  if (!who_addr.empty()) {
    // Query mode: reads the flow log, touches nothing else.
    if (flow_log_dir.empty()) {
      spdlog::error("--who needs --flow-log DIR");
      return 2;
    }
    auto ap = parseIpPort(who_addr);
    if (!ap) {
      spdlog::error("--who: \"{}\" is not ADDRESS:PORT", who_addr.substr(0, 64));
      return 2;
    }
    int64_t at_ms = static_cast<int64_t>(time(nullptr)) * 1000;
    if (at_opt->count() > 0) {  // given empty: an error, not "now"
      std::optional<Seconds> t = parseRfc3339(who_at);
      if (!t && !who_at.empty() && who_at.size() <= 12 &&
          who_at.find_first_not_of("0123456789") == std::string::npos)
        t = std::stoll(who_at);
      if (!t || *t > kMaxTime) {
        spdlog::error("--at: not a Unix time or RFC 3339 UTC time");
        return 2;
      }
      at_ms = *t * 1000;
    }
    std::optional<std::pair<IpAddress, uint16_t>> dst;
    if (!who_dst.empty()) {
      auto d = parseIpPort(who_dst);
      if (!d) {
        spdlog::error("--to: \"{}\" is not ADDRESS:PORT", who_dst.substr(0, 64));
        return 2;
      }
      dst = std::pair{d->ip, d->port};
    }
    auto answer = gateway::whoFromFlowLog(flow_log_dir, ap->ip, ap->port, at_ms, dst);
    if (!answer) {
      spdlog::error("{}", answer.error().message);
      return 1;
    }
    std::cout << *answer << "\n";
    return 0;
  }
  if (uplink.empty()) {
    spdlog::error("--uplink is required");
    return 2;
  }
  if (!do_cleanup && state_file.empty() == !kubernetes) {
    spdlog::error("exactly one of --state-file and --kubernetes is required");
    return 2;
  }
  if (kubernetes && node_name.empty()) {
    spdlog::error("--kubernetes needs --node-name (or $NODE_NAME)");
    return 2;
  }

  netlink::NftConfig nft_config;
  nft_config.table = table;
  nft_config.uplink = uplink;
  nft_config.drop_inbound = !accept_inbound;
  const bool steering = steer != "off";
  if (steering) {
    steer_cfg.tunnel = steer == "tunnel";
    steer_cfg.device = underlay.empty() ? uplink : underlay;
    steer_cfg.underlay_mtu = netlink::deviceMtu(steer_cfg.device);
    if (steer_cfg.underlay_mtu < 1280 + 50) {
      spdlog::error("start-up: underlay {}: no such interface, or its MTU ({}) is too small",
                    steer_cfg.device, steer_cfg.underlay_mtu);
      return 1;
    }
    for (const auto& text : cluster_cidrs) {
      auto c = Cidr::parse(text);
      if (!c) {
        spdlog::error("--cluster-cidr {}: not a CIDR", text);
        return 2;
      }
      nft_config.cluster.push_back(*c);
    }
    nft_config.steer = true;
    nft_config.mark_mask = gateway::kSteerMarkMask;
    nft_config.tunnel = steer_cfg.tunnel ? steer_cfg.tunnel_name : "";
    nft_config.underlay = steer_cfg.device;
    nft_config.tunnel_port = steer_cfg.tunnel ? steer_cfg.port : 0;
    nft_config.mss4 = steer_cfg.mss4();
    nft_config.mss6 = steer_cfg.mss6();
    nft_config.uplink_dedicated = uplink_dedicated;
  }
  auto nft = netlink::NftTable::open(nft_config);
  auto addrs = netlink::UplinkAddresses::open(uplink);
  auto ct = netlink::Conntrack::open();
  for (const Error* e : {nft ? nullptr : &nft.error(), addrs ? nullptr : &addrs.error(),
                         ct ? nullptr : &ct.error()}) {
    if (e) {
      spdlog::error("start-up: {}", e->message);
      return 1;
    }
  }
  std::unique_ptr<netlink::SteerRoutes> routes;
  if (steering || do_cleanup) {
    auto r = netlink::SteerRoutes::open(steering && steer_cfg.tunnel ? steer_cfg.tunnel_name
                                                                     : std::string("nsegress0"));
    if (!r) {
      spdlog::error("start-up: {}", r.error().message);
      return 1;
    }
    routes = std::move(*r);
  }
  if (do_cleanup) {
    if (auto f = netlink::Fence::open(); f) (void)(*f)->destroy();
    return cleanup(**nft, **addrs, **ct, routes.get());
  }
  std::unique_ptr<netlink::Fence> fence;
  gateway::FailoverConfig fo_cfg;
  if (!peer_key_file.empty()) {
    auto key = ownership::readKeyFile(peer_key_file);
    if (!key) {
      spdlog::error("--peer-key: {}", key.error().message);
      return 2;
    }
    auto store = parseIpv4Port(lease_server);
    // With --kubernetes and no --lease-server: learnt from the controller
    // leader's Endpoints (port 0 until then).
    if (!store && !(lease_server.empty() && kubernetes)) {
      spdlog::error("--lease-server {}: expected IPv4:port", lease_server);
      return 2;
    }
    if (node_name.empty()) {
      spdlog::error("--peer-key needs --node-name (or $NODE_NAME)");
      return 2;
    }
    auto f = netlink::Fence::open(uplink);
    if (!f) {
      spdlog::error("start-up: {}", f.error().message);
      return 1;
    }
    fence = std::move(*f);
    fo_cfg.node = node_name;
    fo_cfg.key = *key;
    fo_cfg.port = static_cast<uint16_t>(peer_port);
    if (store)
      fo_cfg.store = boost::asio::ip::udp::endpoint(
          boost::asio::ip::make_address_v4(store->ip.str()), store->port);
    fo_cfg.timing.lease = std::chrono::milliseconds(lease_ms);
    fo_cfg.timing.promise = std::chrono::milliseconds(promise_ms);
  }

  auto garp =
      netlink::GarpAnnouncer::open(uplink, garp_count, std::chrono::milliseconds(garp_interval_ms));
  if (!garp) {
    spdlog::error("start-up: {}", garp.error().message);
    return 1;
  }

  gateway::NodeDataplane dataplane({**nft, **addrs, **garp, **ct, routes.get()},
                                   steering ? std::optional(steer_cfg) : std::nullopt);
  std::unique_ptr<kube::Client> kube_api;
  std::unique_ptr<gateway::DesiredStateSource> source_ptr;
  if (kubernetes) {
    auto cfg = kube::autoDetect(kube::Env::system(), kubeconfig);
    if (!cfg) {
      spdlog::error("start-up: {}", cfg.error().message);
      return 1;
    }
    kube_api = std::make_unique<kube::Client>(
        *cfg, kube::ClientOptions{50, 100, std::chrono::seconds(30)});  // lists in pages
    gateway::KubeSourceOptions ko;
    ko.failover = !peer_key_file.empty();
    ko.controller_namespace = controller_ns;
    auto k = std::make_unique<gateway::KubeStateSource>(*kube_api, SystemClock::instance(),
                                                        node_name, ko);
    k->start();
    source_ptr = std::move(k);
  } else {
    source_ptr = std::make_unique<gateway::FileStateSource>(state_file);
  }
  auto& source = *source_ptr;

  if (once) {
    auto s = source.load();
    // A Kubernetes source needs its first lists (up to a minute).
    for (int i = 0; !s && s.error().code == EAGAIN && i < 600; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      s = source.load();
    }
    if (!s) {
      spdlog::error("{}", s.error().message);
      return 1;
    }
    auto r = dataplane.reconcile(*s);
    if (!r) {
      spdlog::error("reconcile: {}", r.error().message);
      return 1;
    }
    spdlog::info("reconciled: {} nft ops in {} transactions", r->stats.nft_ops,
                 r->stats.transactions);
    // Let the announcer finish its spaced gratuitous ARPs.
    if (r->stats.addresses_added)
      std::this_thread::sleep_for(std::chrono::milliseconds(garp_interval_ms) * garp_count);
    return 0;
  }

  gateway::GatewayMetrics metrics;
  boost::asio::io_context io;
  DriverOptions opts;
  opts.resync = std::chrono::seconds(resync_s);
  gateway::Agent* agent_ptr = nullptr;
  std::unique_ptr<gateway::Failover> failover;
  std::unique_ptr<netlink::ConntrackSync> ct_sync_kernel;
  std::unique_ptr<gateway::CtSync> ct_sync;  // stopped before the kernel side goes
  if (fence) {
    failover = std::make_unique<gateway::Failover>(
        io, SystemClock::instance(), fo_cfg, *fence, **garp,
        [&agent_ptr] {
          if (agent_ptr) agent_ptr->triggerNow();
        },
        &metrics);
    if (auto r = failover->start(); !r) {
      spdlog::error("start-up: {}", r.error().message);
      return 1;
    }
    failover->setUplink(addrs->get());
    if (!no_ct_sync) {
      auto k = netlink::ConntrackSync::open();
      if (!k) {
        spdlog::error("start-up: {}", k.error().message);
        return 1;
      }
      ct_sync_kernel = std::move(*k);
      gateway::CtSyncConfig cs;
      cs.node = fo_cfg.node;
      cs.key = fo_cfg.key;
      cs.port = static_cast<uint16_t>(ct_sync_port);
      cs.max_cache = ct_sync_max;
      ct_sync = std::make_unique<gateway::CtSync>(cs, *ct_sync_kernel, &metrics);
      if (auto r = ct_sync->start(); !r) {
        spdlog::error("start-up: {}", r.error().message);
        return 1;
      }
      failover->setSync(ct_sync.get(), cs.port);
    }
  }
  gateway::Agent agent(io, SystemClock::instance(), source, dataplane, ct->get(), &metrics, opts,
                       failover.get());
  agent_ptr = &agent;
  // The flow log: its own event socket (NEW and DESTROY only) and thread.
  std::unique_ptr<netlink::ConntrackSync> flow_kernel;
  std::unique_ptr<gateway::FlowLog> flow_log;
  if (!flow_log_dir.empty()) {
    auto k = netlink::ConntrackSync::open(40 << 20, /*updates=*/false);
    if (!k) {
      spdlog::error("flow log: {}", k.error().message);
      return 1;
    }
    flow_kernel = std::move(*k);
    gateway::FlowLogOptions fo;
    fo.dir = flow_log_dir;
    fo.node = node_name.empty() ? "node" : node_name;
    fo.retention_s = flow_log_retention_h * 3600;
    fo.max_bytes = flow_log_max_mb << 20;
    flow_log = std::make_unique<gateway::FlowLog>(fo, *flow_kernel, [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    });
    if (auto r = flow_log->start(); !r) {
      spdlog::error("{}", r.error().message);
      return 1;
    }
    agent.setOnApplied([&flow_log](const DesiredState& d) { flow_log->setState(d); });
  }
  // /metrics and /healthz on the bounded HTTP server (http/server.h: a
  // slowloris never starves the scraper), on an I/O thread of its own.
  auto hook = std::make_shared<gateway::ScrapeHook>([&agent] { agent.reportSource(); });
  auto http_stats = std::make_shared<http::ServerStats>();
  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {
      hook,  // first: the source's gauges are current
      metrics.registry(), metrics.snapshot(), http::serverMetrics(*http_stats),
      flow_log ? gateway::flowLogMetrics(flow_log->stats())
               : std::shared_ptr<prometheus::Collectable>()};
  http::Router metrics_router;
  metrics_router.get(
      "/metrics",
      [&collectables](const http::HttpRequest&) {
        std::vector<prometheus::MetricFamily> fams;
        for (const auto& c : collectables) {
          if (!c) continue;
          auto f = c->Collect();
          fams.insert(fams.end(), f.begin(), f.end());
        }
        return http::HttpResponse{
            200, "text/plain; version=0.0.4", {}, prometheus::TextSerializer().Serialize(fams)};
      },
      http::Router::Cost::kFast, http::Router::Access::kOpen);
  metrics_router.get(
      "/healthz",
      [](const http::HttpRequest&) {
        return http::HttpResponse{200, "text/plain", {}, "ok\n"};
      },
      http::Router::Cost::kFast, http::Router::Access::kOpen);
  boost::asio::io_context metrics_io;
  std::unique_ptr<http::Server> metrics_server;
  std::thread metrics_thread;
  if (!metrics_addr.empty()) {
    http::ServerOptions so;
    so.server_name = "nsegress-gateway";
    so.stats = http_stats;
    so.max_connections = 256;  // a scraper or two, and a few curious readers
    so.max_per_peer = 16;
    auto s = http::Server::listen(metrics_io, metrics_addr, metrics_router, so);
    if (!s) {
      spdlog::error("metrics on {}: {}", metrics_addr, s.error().message);
      return 1;
    }
    metrics_server = std::move(*s);
    metrics_thread = std::thread([&metrics_io] {
      auto guard = boost::asio::make_work_guard(metrics_io);
      metrics_io.run();
    });
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    // Fail-static: the kernel keeps forwarding with the programmed mappings
    // while the agent is away; the next agent adopts them without a flush.
    spdlog::info("signal {}: exiting, data path left in place", sig);
    agent.shutdown([&] { io.stop(); });
  });
  spdlog::info("started: uplink {}, table inet {}, steering {}{}, state from {}", uplink, table,
               steer, steering ? " via " + steer_cfg.device : std::string(), source.describe());
  agent.start();
  io.run();
  metrics_server.reset();
  metrics_io.stop();
  if (metrics_thread.joinable()) metrics_thread.join();
  return 0;
}
