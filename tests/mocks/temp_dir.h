// A fresh directory under the test temp dir, removed with the object.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace nsegress::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& tag = "tmp") {
    path = ::testing::TempDir() + "/nse-" + tag + "-" + std::to_string(getpid()) + "-" +
           std::to_string(counter++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  void write(const std::string& f, const std::string& t) const {
    std::ofstream(path + "/" + f) << t;
  }
  std::string path;
  static inline int counter = 0;
};

}  // namespace nsegress::testing
