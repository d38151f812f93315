// Cost of one gateway recompute in cluster mode: GatewayViews fed from typed
// informer caches of N pods in M annotated namespaces (each with an Assigned
// EgressIP on this node), then forNode() — the work KubeStateSource::load()
// does on every change that reaches a gateway. Reports the median of R runs.
// Usage: bench_gateway_view [--pods N] [--namespaces M] [--runs R] [--out DIR]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nsegress/common/decode.h"
#include "nsegress/common/gateway_view.h"

using nlohmann::json;
using namespace nsegress;

int main(int argc, char** argv) {
  CLI::App app{"GatewayViews cost"};
  int pods_n = 100000, ns_n = 10000, runs = 5;
  std::string out;
  app.add_option("--pods", pods_n);
  app.add_option("--namespaces", ns_n);
  app.add_option("--runs", runs);
  app.add_option("--out", out, "Directory for gateway_view.md/json");
  CLI11_PARSE(app, argc, argv);

  std::map<std::string, Namespace> nss;
  std::map<std::string, Pod> pods;
  std::map<std::string, AddressRecord> eips;
  for (int n = 0; n < ns_n; ++n) {
    const std::string ns = "team-" + std::to_string(n);
    nss[ns] = *decodeNamespace(
        json{{"metadata", {{"name", ns}, {"annotations", {{"nsegress.io/pool", "dmz"}}}}}});
    const std::string ip = "10.200." + std::to_string(n / 250) + "." + std::to_string(n % 250);
    eips[ip] = *decodeEgressIP(
        json{{"metadata", {{"name", ip}}},
             {"spec", {{"ip", ip}, {"pool", "dmz"}}},
             {"status", {{"state", "Assigned"}, {"namespace", ns}, {"node", "gw-1"}}}});
  }
  for (int i = 0; i < pods_n; ++i) {
    const std::string ns = "team-" + std::to_string(i % ns_n);
    const std::string ip = "10." + std::to_string(i / 62500) + "." + std::to_string(i / 250 % 250) +
                           "." + std::to_string(i % 250);
    pods[ns + "/p" + std::to_string(i)] =
        *decodePod(json{{"metadata", {{"name", "p" + std::to_string(i)}, {"namespace", ns}}},
                        {"status", {{"phase", "Running"}, {"podIPs", {{{"ip", ip}}}}}}});
  }
  std::vector<double> ms;
  size_t listed = 0, warnings = 0;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    GatewayViews views;
    for (const auto& [k, n] : nss) views.addNamespace(n);
    for (const auto& [k, r] : eips) views.addRecord(r);
    for (const auto& [k, p] : pods) views.addPod(p);
    auto v = views.forNode("gw-1");
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    listed = v.state.namespaces.size();
    warnings = v.warnings.size();
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::ostringstream md;
  md << "# Gateway view recompute (cluster mode)\n\n"
     << "| pods | namespaces | runs | median ms | min ms | max ms |\n|---|---|---|---|---|---|\n"
     << "| " << pods_n << " | " << ns_n << " | " << runs << " | " << median << " | " << ms.front()
     << " | " << ms.back() << " |\n\n"
     << "Namespaces listed: " << listed << ", warnings: " << warnings
     << ". The reconciler's plan on top of this is benchmark 3's \"plan\" figure.\n";
  std::cout << md.str();
  if (!out.empty()) {
    std::ofstream(out + "/gateway_view.md") << md.str();
    std::ofstream(out + "/gateway_view.json")
        << json{{"pods", pods_n}, {"namespaces", ns_n}, {"runs_ms", ms}, {"median_ms", median}}
               .dump(2)
        << "\n";
  }
  return 0;
}
