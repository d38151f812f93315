// Memory of the informers' Pod cache: bytes per pod for the typed value
// nsegress keeps (nsegress::Pod, decoded by decodePod) versus the compact
// JSON array and the trimmed JSON object of earlier versions, and the full
// object as the API sends it. Resident-set growth while filling a map of N
// entries, as the Informer does.
// Usage: bench_cache_memory [--pods N] [--out DIR]
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nsegress/common/decode.h"

using nlohmann::json;

namespace {

long rssBytes() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * 4096;
}

json apiPod(int i) {
  const std::string ns = "team-" + std::to_string(i % 10000);
  return json{
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", "web-7d9f8c6b5d-" + std::to_string(i)},
        {"namespace", ns},
        {"uid", "0b5c3c1e-8a8e-4b6f-9c1d-2e3f4a5b6c7d"},
        {"resourceVersion", std::to_string(100000 + i)},
        {"labels", {{"app", "web"}, {"pod-template-hash", "7d9f8c6b5d"}}}}},
      {"spec",
       {{"nodeName", "worker-17"},
        {"containers", json::array({{{"name", "app"}, {"image", "registry.example/app:1.2.3"}}})}}},
      {"status",
       {{"phase", "Running"},
        {"podIP", "10.1." + std::to_string(i / 250 % 250) + "." + std::to_string(i % 250)},
        {"podIPs", json::array({{{"ip", "10.1.0.1"}}})},
        {"hostIP", "192.0.2.17"}}}};
}

// The cache form before typed informers: [namespace, name, phase,
// hostNetwork, ip...].
json compactTrim(const json& o) {
  json t =
      json::array({o["metadata"]["namespace"], o["metadata"]["name"], o["status"]["phase"], false});
  for (const auto& e : o["status"]["podIPs"]) t.push_back(e["ip"]);
  return t;
}

// The form before that: the same fields, as a JSON object.
json objectTrim(const json& o) {
  return json{
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", o["metadata"]["name"]}, {"namespace", o["metadata"]["namespace"]}}},
      {"spec", {{"nodeName", o["spec"]["nodeName"]}}},
      {"status",
       {{"phase", o["status"]["phase"]},
        {"podIP", o["status"]["podIP"]},
        {"podIPs", o["status"]["podIPs"]}}}};
}

template <typename T>
double bytesPerPod(int n, const std::function<T(const json&)>& trim) {
  const long before = rssBytes();
  std::map<std::string, T> cache;
  for (int i = 0; i < n; ++i) {
    T t = trim(apiPod(i));
    cache["team-" + std::to_string(i % 10000) + "/web-" + std::to_string(i)] = std::move(t);
  }
  const long after = rssBytes();
  return static_cast<double>(after - before) / n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Memory per cached pod"};
  int n = 100000;
  std::string out;
  app.add_option("--pods", n, "Pods in the cache");
  app.add_option("--out", out, "Directory for cache_memory.md/json");
  CLI11_PARSE(app, argc, argv);
  // Each form is measured in a fresh child process, so heap freed by one
  // measurement cannot flatter the next.
  auto measure = [&]<typename T>(const std::function<T(const json&)>& trim) {
    int fds[2];
    if (pipe(fds) != 0) return -1.0;
    const pid_t pid = fork();
    if (pid == 0) {
      const double b = bytesPerPod(n, trim);
      (void)!write(fds[1], &b, sizeof b);
      _exit(0);
    }
    double b = -1;
    (void)!read(fds[0], &b, sizeof b);
    close(fds[0]);
    close(fds[1]);
    waitpid(pid, nullptr, 0);
    return b;
  };
  const double typed = measure(std::function<nsegress::Pod(const json&)>(
      [](const json& o) { return *nsegress::decodePod(o); }));
  const double compact = measure(std::function<json(const json&)>(compactTrim));
  const double object = measure(std::function<json(const json&)>(objectTrim));
  const double full = measure(std::function<json(const json&)>([](const json& o) { return o; }));
  std::ostringstream md;
  md << "# Informer Pod cache: memory per pod (" << n << " pods)\n\n"
     << "| cache entry | bytes/pod | MB at " << n << " pods | vs typed |\n|---|---|---|---|\n";
  for (auto [name, b] : {std::pair{"typed nsegress::Pod (decodePod, now)", typed},
                         std::pair{"compact JSON array (before)", compact},
                         std::pair{"trimmed JSON object (earlier)", object},
                         std::pair{"full API object (no trimming)", full}})
    md << "| " << name << " | " << static_cast<long>(b) << " | " << b * n / 1e6 << " | "
       << b / typed << "× |\n";
  std::cout << md.str();
  if (!out.empty()) {
    std::ofstream(out + "/cache_memory.md") << md.str();
    std::ofstream(out + "/cache_memory.json") << json{{"pods", n},
                                                      {"typed", typed},
                                                      {"compact", compact},
                                                      {"object", object},
                                                      {"full", full}}
                                                     .dump(2)
                                              << "\n";
  }
  return 0;
}
