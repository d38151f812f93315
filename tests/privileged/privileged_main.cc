// Entry point of the privileged test binaries: `--cleanup` removes the
// namespaces of crashed runs; otherwise runs the tests.
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>

#include "lab.h"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--cleanup") == 0) {
      std::cout << "removed " << nsegress::lab::cleanupAll() << " lab namespaces\n";
      return 0;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
