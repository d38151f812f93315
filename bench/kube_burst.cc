// A burst in cluster mode, against a real kube-apiserver (the one the kube
// tests use): N namespaces annotated at once; how long until every address
// is in the ledger and every nsegress.io/assigned-ip is written, and how many
// API requests the controller made per namespace. Runs the controller with
// the defaults and with the old client limits (--kube-qps 20 --kube-burst
// 40) in the same run, on fresh namespaces each time.
// Usage: bench_kube_burst [--namespaces N] [--out DIR]   (root; the API
// server from tests/kube/build-apiserver.sh)
#include <signal.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench_common.h"
#include "kube_env.h"
#include "lab.h"

using nlohmann::json;
using namespace nsegress;
using namespace nsegress::testing;

namespace {

struct Run {
  std::string name;
  std::vector<std::string> flags;
  double annotate_s = 0, ledger_s = 0, written_s = 0;
  double requests_per_ns = 0;
  bool complete = false;
};

double metricValue(const std::string& text, const std::string& name) {
  auto p = text.find("\n" + name + " ");
  if (p == std::string::npos) return -1;
  return std::stod(text.substr(p + name.size() + 2));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cluster-mode burst"};
  int n = 1000;
  std::string out;
  app.add_option("--namespaces", n);
  app.add_option("--out", out, "Directory for kube_burst.md/json");
  std::vector<std::string> only;
  app.add_option("--controller-args", only,
                 "Run one configuration only: the controller with these extra arguments "
                 "(comma-separated)")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (geteuid() != 0 || !KubeEnv::available()) {
    std::cerr << "needs root and the API server of tests/kube/build-apiserver.sh\n";
    return 2;
  }
  KubeEnv env;
  lab::NetnsEnter in(env.netns());
  std::string o;
  for (const char* k :
       {"apply --server-side -k " NSEGRESS_SOURCE_DIR "/manifests/crds",
        "wait --for condition=established --timeout=60s crd/egresspools.nsegress.io "
        "crd/egressips.nsegress.io",
        "apply --server-side -k " NSEGRESS_SOURCE_DIR "/manifests"})
    if (env.kubectl(k, &o) != 0) {
      std::cerr << o;
      return 1;
    }
  kube::Client admin(env.admin(), kube::ClientOptions{5000, 5000, std::chrono::seconds(30)});
  auto post = [&](const std::string& path, const json& body) {
    auto r = admin.request("POST", path, body.dump());
    return r && (r->status == 201 || r->status == 409);
  };
  post("/api/v1/nodes",
       {{"metadata", {{"name", "gw-b"}, {"labels", {{"nsegress.io/gateway", "true"}}}}}});

  std::vector<Run> runs = {
      {"defaults: keep-alive, 8 ledger writes at once, streamed write-back, qps 500, burst 1000",
       {}},
      {"the same with qps 200, burst 400 (the previous defaults)",
       {"--kube-qps", "200", "--kube-burst", "400"}},
      {"old limits (qps 20, burst 40)", {"--kube-qps", "20", "--kube-burst", "40"}}};
  if (!only.empty()) {
    std::string name = "controller";
    for (const auto& a : only) name += " " + a;
    runs = {{name, only}};
  }
  int round = 0;
  for (auto& run : runs) {
    ++round;
    const std::string pool = "burst" + std::to_string(round);
    json pool_obj = {{"apiVersion", "nsegress.io/v1alpha1"},
                     {"kind", "EgressPool"},
                     {"metadata", {{"name", pool}}}};
    pool_obj["spec"]["addresses"] = {"10.20" + std::to_string(round) + ".0.0/20"};
    pool_obj["spec"]["nodeSelector"]["matchLabels"]["nsegress.io/gateway"] = "true";
    post("/apis/nsegress.io/v1alpha1/egresspools", pool_obj);
    // The namespaces exist before the burst; the burst is the annotation.
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i)
      names.push_back("b" + std::to_string(round) + "-" + std::to_string(i));
    auto parallel = [&](const std::function<void(const std::string&)>& f) {
      std::atomic<size_t> next{0};
      std::vector<std::thread> ts;
      for (int t = 0; t < 8; ++t)
        ts.emplace_back([&] {
          lab::NetnsEnter in2(env.netns());
          for (size_t i; (i = next++) < names.size();) f(names[i]);
        });
      for (auto& t : ts) t.join();
    };
    parallel([&](const std::string& ns) {
      post("/api/v1/namespaces", {{"metadata", {{"name", ns}}}});
    });

    std::vector<std::string> cmd = {"/usr/bin/ip",
                                    "netns",
                                    "exec",
                                    env.netns(),
                                    NSEGRESS_CONTROLLER_BIN,
                                    "--kubernetes",
                                    "--kubeconfig",
                                    env.writeKubeconfig("controller-token"),
                                    "--identity",
                                    "bench",
                                    "--listen",
                                    "127.0.0.1:18300",
                                    "--release-guard-min",
                                    "100000"};
    cmd.insert(cmd.end(), run.flags.begin(), run.flags.end());
    lab::Process ctl(cmd, env.dir() + "/bench-controller-" + std::to_string(round) + ".log");
    auto metrics = [&] {
      std::string body;
      lab::run("ip netns exec " + env.netns() + " curl -s -m 2 127.0.0.1:18300/metrics", &body);
      return body;
    };
    if (!lab::eventually([&] { return metricValue(metrics(), "nsegress_controller_leader") == 1; },
                         std::chrono::seconds(60))) {
      std::cerr << "controller never led\n" << ctl.log();
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));  // settled
    const double req0 = metricValue(metrics(), "nsegress_controller_api_requests_total");

    const auto t0 = std::chrono::steady_clock::now();
    parallel([&](const std::string& ns) {
      (void)admin.request(
          "PATCH", "/api/v1/namespaces/" + ns,
          json{{"metadata", {{"annotations", {{"nsegress.io/pool", pool}}}}}}.dump(),
          "application/merge-patch+json");
    });
    run.annotate_s = bench::seconds(std::chrono::steady_clock::now() - t0);
    auto count = [&](const std::string& path, const std::function<bool(const json&)>& ok) {
      auto r = admin.request("GET", path);
      if (!r || r->status != 200) return 0;
      int c = 0;
      const json list = json::parse(r->body, nullptr, false);
      if (!list.is_object() || !list.contains("items")) return 0;
      for (const auto& item : list["items"]) c += ok(item);
      return c;
    };
    const auto deadline = t0 + std::chrono::seconds(180);
    int polls = 0;  // (polling lists load the API server too: namespaces every 250 ms,
                    // the ledger every second)
    while (std::chrono::steady_clock::now() < deadline) {
      ++polls;
      if (!run.ledger_s && polls % 4 == 0 &&
          count("/apis/nsegress.io/v1alpha1/egressips", [&](const json& e) {
            return e["spec"].value("pool", "") == pool && e.contains("status") &&
                   e["status"].value("state", "") == "Assigned";
          }) == n)
        run.ledger_s = bench::seconds(std::chrono::steady_clock::now() - t0);
      if (count("/api/v1/namespaces", [&](const json& ns) {
            const auto& a = ns["metadata"].value("annotations", json::object());
            return a.value("nsegress.io/pool", "") == pool && a.contains("nsegress.io/assigned-ip");
          }) == n) {
        run.written_s = bench::seconds(std::chrono::steady_clock::now() - t0);
        run.complete = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    run.requests_per_ns =
        (metricValue(metrics(), "nsegress_controller_api_requests_total") - req0) / n;
    ctl.signal(SIGTERM);
    ctl.wait();
    std::cerr << run.name << ": annotated in " << run.annotate_s << " s, ledger " << run.ledger_s
              << " s, all assigned-ip written " << run.written_s << " s, " << run.requests_per_ns
              << " requests/namespace" << (run.complete ? "" : " (INCOMPLETE)") << "\n";
  }

  if (!out.empty()) {
    json j = json::array();
    std::ofstream md(out + "/kube_burst.md");
    md << "# Cluster mode: " << n << " namespaces annotated at once\n\n"
       << bench::machine() << "\n\n"
       << "A real kube-apiserver (v1.20, etcd, one network namespace, the kube tests' setup). "
          "The namespaces exist; "
       << n
       << " merge patches add `nsegress.io/pool` from 8 client threads; the clock starts with the "
          "first patch. *Ledger*: every EgressIP Assigned; *written*: every namespace carries "
          "`nsegress.io/assigned-ip`. Requests: the controller's "
          "`nsegress_controller_api_requests_total` "
          "during the burst, per namespace.\n\n"
       << "| controller client | annotate burst (s) | ledger complete (s) | every assigned-ip "
          "written (s) | "
          "API requests / namespace |\n|---|---:|---:|---:|---:|\n";
    for (const auto& r : runs) {
      md << "| " << r.name << " | " << r.annotate_s << " | "
         << (r.ledger_s > 0 ? std::to_string(r.ledger_s) : std::string("not observed")) << " | "
         << (r.complete ? std::to_string(r.written_s) : std::string("not within 180 s")) << " | "
         << r.requests_per_ns << " |\n";
      j.push_back({{"name", r.name},
                   {"annotate_s", r.annotate_s},
                   {"ledger_s", r.ledger_s},
                   {"written_s", r.written_s},
                   {"complete", r.complete},
                   {"requests_per_namespace", r.requests_per_ns}});
    }
    if (runs.size() > 1 && runs[0].complete && runs.back().complete && runs[0].written_s > 0)
      md << "\nSpeed-up of the defaults over the old limits: "
         << runs.back().written_s / runs[0].written_s << "x.\n";
    if (runs[0].complete)
      md << "\nTarget (every assigned-ip written in under 10 s for " << n
         << " namespaces): " << (runs[0].written_s < 10 ? "met" : "NOT met") << " by the defaults ("
         << runs[0].written_s << " s).\n";
    std::ofstream(out + "/kube_burst.json") << j.dump(2) << "\n";
  }
  return runs[0].complete ? 0 : 1;
}
