// libFuzzer target: the controller's HTTP request handling — raw bytes
// through the same Beast parser and limits as the server, then the API's
// routes over a ledger with data (feeds, who-had, audit, hold, errors).
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>

#include "nsegress/common/json.h"
#include "nsegress/controller/api.h"
#include "nsegress/controller/serve.h"
#include "nsegress/controller/store.h"

using namespace nsegress;
using namespace nsegress::controller;
namespace bhttp = boost::beast::http;

namespace {
struct Fixture {
  MemoryStore store;
  std::shared_ptr<View> view = std::make_shared<View>();
  ApiContext ctx;
  Router router;
  Fixture() {
    AddressRecord a{*IpAddress::parse("203.0.113.10"),
                    "dmz",
                    AddressState::kAssigned,
                    "pay",
                    "gw-1",
                    1'800'000'000,
                    0,
                    0};
    AddressRecord q{*IpAddress::parse("203.0.113.11"),
                    "dmz",
                    AddressState::kQuarantined,
                    "old",
                    "",
                    1'700'000'000,
                    1'790'000'000,
                    1'800'600'000};
    view->ledger[a.ip] = a;
    view->ledger[q.ip] = q;
    view->pools["dmz"] = Pool{};
    view->namespaces["pay"] = Namespace{"pay", {}, {{kPoolAnnotation, "dmz"}}};
    view->reconciles = 1;
    std::vector<AddressRecord> rs = {a, q};
    (void)store.commit(
        rs, {AuditEvent{1'800'000'000, "Assigned", "pay", "203.0.113.10", "dmz", "gw-1", "x"}});
    // Port blocks, held and closed: /api/v1/who answers by pod.
    store.blocks = {PortBlock{a.ip, 1024, 2047, "pay", "api-1", *IpAddress::parse("10.244.1.2"),
                              1'800'000'000, 1'800'000'100},
                    PortBlock{a.ip, 1024, 2047, "pay", "api-2", *IpAddress::parse("10.244.1.3"),
                              1'800'000'200, 0}};
    view->blocks = {store.blocks[1]};
    ctx = ApiContext::fixed(view, &store, [] { return std::string("m 1\n"); });
    ctx.confirm_release = [](const std::string&) -> Status {
      return makeError(ENOENT, "nothing held");
    };
    router = apiRouter(ctx);
    // The same routes behind credentials.
    auto c = parseCredentials(
        "principals:\n  - {name: r, password: 'a long read secret', role: read, pools: [dmz]}\n"
        "  - {name: w, token: 'a long write token', role: write}\n");
    if (!c) abort();
    creds = std::make_shared<const http::Credentials>(std::move(*c));
    guarded = apiRouter(ctx);
    guarded.setCredentials([this] { return creds; });
  }
  std::shared_ptr<const http::Credentials> creds;
  Router guarded;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture f;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(8 * 1024);
  parser.body_limit(64 * 1024);
  boost::beast::error_code ec;
  size_t used = 0;
  while (used < size && !parser.is_done()) {
    const size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == bhttp::error::need_more) break;
    if (ec) return 0;
    if (n == 0) break;
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  const auto& req = parser.get();
  HttpRequest r = HttpRequest::make(std::string(req.method_string()), std::string(req.target()));
  for (const auto& fld : req)
    r.headers.add(std::string(fld.name_string()), std::string(fld.value()));
  r.body = req.body();
  for (const Router* router : {&f.router, &f.guarded}) {
    HttpResponse resp = router->dispatch(r);
    if (resp.status < 100 || resp.status > 599) abort();
    if (resp.content_type == "application/json" && !parseJson(resp.body)) abort();  // always JSON
    // Behind credentials, no data leaves without them.
    if (router == &f.guarded && !r.headers.get("authorization") && resp.status == 200 &&
        r.path != "/healthz" && r.path != "/readyz")
      abort();
  }
  return 0;
}
