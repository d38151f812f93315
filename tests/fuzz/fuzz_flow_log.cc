// libFuzzer target: flow log records (common/flow_log.h), as the query reads
// them from a segment file that may be torn or damaged. Each line is parsed
// (a bad one refused with a reason, never a crash); a record that parses
// formats back to a line that parses to the same record; every record is
// fed to the "who held" question.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "nsegress/common/flow_log.h"

using namespace nsegress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  flowlog::WhoHeld who(*IpAddress::parse("203.0.113.10"), 40000, 1'800'000'005'000);
  while (!in.empty()) {
    const size_t nl = in.find('\n');
    const std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == in.npos ? in.size() : nl + 1);
    auto r = flowlog::parse(line);
    if (!r) continue;
    std::string again = flowlog::format(*r);
    again.pop_back();
    auto r2 = flowlog::parse(again);
    if (!r2 || !(*r2 == *r)) abort();
    who.add(*r);
  }
  (void)who.holders();
  (void)who.complete();
  return 0;
}
