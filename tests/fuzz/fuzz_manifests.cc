// libFuzzer target: the standalone manifest reader (YAML -> tree -> typed
// objects), then the allocator on what it read (annotations and pool specs
// as the allocator sees them) and the per-node view. Nothing may crash,
// hang or allocate without bound; every refusal is an error value.
#include <cstddef>
#include <cstdint>
#include <string>

#include "nsegress/common/gateway_view.h"
#include "nsegress/controller/allocator.h"
#include "nsegress/controller/manifests.h"

using namespace nsegress;
using namespace nsegress::controller;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;  // the reader is bounded by file size before this
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto w = parseManifests(text, "fuzz.yaml");
  if (!w) return 0;
  markOverlappingPools(w->pools);
  Ledger ledger;
  auto a = allocate(*w, ledger, 1'800'000'000);
  auto again = allocate(*w, a.ledger, 1'800'000'001, a.statuses);
  (void)gatewayStates(*w, again, 1'800'000'001);
  for (const auto& [name, p] : w->pools) (void)p.size();
  return 0;
}
