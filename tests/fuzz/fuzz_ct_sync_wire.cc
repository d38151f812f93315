// libFuzzer target: conntrack sync datagrams (common/ct_sync_wire.h). The
// input is signed with the test key so the parser behind the HMAC is
// reached; a datagram that decodes must encode to the same bytes.
// Unsigned input is also fed as is (must be refused, never crash).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "nsegress/common/ct_sync_wire.h"
#include "nsegress/common/peer_wire.h"

using namespace nsegress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string key = "fuzz-key-0123456789abcdef";
  const std::string body(reinterpret_cast<const char*>(data), size);
  (void)ctsync::decode(body, key);  // unsigned: refused
  const std::string signed_ = "NSC1" + ownership::hmacSha256(key, body) + body;
  auto d = ctsync::decode(signed_, key);
  if (!d) return 0;
  if (ctsync::encode(*d, key) != signed_) abort();  // one encoding per datagram
  return 0;
}
