// libFuzzer target: the credentials file (YAML, strict) and the
// Authorization header (basic, bearer) checked against credentials.
// First byte even: the bytes are a credentials file; odd: a header value.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

#include "nsegress/controller/serve.h"

using namespace nsegress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const auto creds = [] {
    auto c = controller::parseCredentials(
        "principals:\n"
        "  - {name: reader, password: 'a long read secret', role: read}\n"
        "  - {name: bot, token: 'a long write token', role: write}\n"
        "  - {name: fw, certCN: fw.example, role: read, pools: [p]}\n");
    if (!c) abort();
    return std::move(*c);
  }();
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto c = controller::parseCredentials(text);
    if (c && c->size() > http::Credentials::kMaxPrincipals) abort();
    return 0;
  }
  http::HttpRequest r = http::HttpRequest::make("GET", "/feeds/edl/p");
  r.headers.add("Authorization", text);
  auto p = creds.authenticate(r);
  if (!p) return 0;
  // A principal only by its own scheme: the certificate one never (no
  // certificate here), the token one only by "Bearer <its token>".
  std::string scheme = text.substr(0, 7);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (p->name == "fw") abort();
  if (p->name == "bot" && (scheme != "bearer " || text.substr(7) != "a long write token")) abort();
  if (p->name == "reader" && scheme.substr(0, 6) != "basic ") abort();
  return 0;
}
