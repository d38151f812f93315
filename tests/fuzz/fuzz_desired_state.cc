// libFuzzer target: the gateway's desired-state parser. A document that
// parses must serialize and parse back to the same state.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "nsegress/common/desired_state.h"

using namespace nsegress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto s = parseDesiredState(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!s) return 0;
  auto round = parseDesiredState(serializeDesiredState(*s));
  if (!round || !(*round == *s)) abort();  // a round trip must be exact
  return 0;
}
