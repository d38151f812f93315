// Shared helpers of the benchmarks: machine facts, statistics, result files.
#pragma once

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

namespace nsegress::bench {

inline double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

struct Stats {
  double median = 0, min = 0, max = 0;
};

inline Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

inline std::string machine() {
  utsname u{};
  uname(&u);
  char date[32];
  time_t t = time(nullptr);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
  return std::string("kernel ") + u.release + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) +
         " cores, " + date;
}

inline void writeFile(const std::string& path, const std::string& content) {
  std::ofstream(path) << content;
}

}  // namespace nsegress::bench
