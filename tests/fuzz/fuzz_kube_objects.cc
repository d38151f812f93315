// libFuzzer target: Kubernetes objects as the API server sends them (bounded
// JSON, then every decoder), and a gateway's view of what decoded.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

#include "nsegress/common/decode.h"
#include "nsegress/common/gateway_view.h"
#include "nsegress/common/json.h"

using namespace nsegress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = parseJson(std::string_view(reinterpret_cast<const char*>(data), size),
                     JsonLimits{1u << 20, 64, 100'000});
  if (!j) return 0;
  GatewayViews views;
  (void)decodeObject(*j);
  if (auto ns = decodeNamespace(*j)) views.addNamespace(*ns);
  if (auto r = decodeEgressIP(*j)) views.addRecord(*r);
  if (auto p = decodePod(*j)) views.addPod(*p);
  if (auto n = decodeNode(*j)) views.addNode(*n);
  if (auto p = decodePool(*j)) (void)p->size();
  // Failover in cluster mode: ownership Leases and the leader's Endpoints.
  if (auto l = decodeEgressLease(*j)) {
    if (egressLeaseName(l->ip) != describeObject(*j).substr(describeObject(*j).find(' ') + 1))
      __builtin_trap();  // a Lease decodes only under its address's name
  }
  if (auto s = decodeLeaseServer(*j); s && !s->empty()) {
    if (s->find(':') == std::string::npos) __builtin_trap();
  }
  // A list of objects, as a page of a list response carries them.
  if (j->is_object() && j->contains("items") && (*j)["items"].is_array())
    for (const auto& item : (*j)["items"]) {
      if (auto ns = decodeNamespace(item)) views.addNamespace(*ns);
      if (auto r = decodeEgressIP(item)) views.addRecord(*r);
      if (auto p = decodePod(item)) views.addPod(*p);
      if (auto n = decodeNode(item)) views.addNode(*n);
    }
  auto v = views.forNode("gw-1");
  (void)dumpJson(*j);
  // Whatever the objects, a node's view is a document its agent accepts.
  auto back = parseDesiredState(serializeDesiredState(v.state));
  if (!back) {
    std::fprintf(stderr, "view does not parse back: %s\n", back.error().message.c_str());
    __builtin_trap();
  }
  return 0;
}
