// libFuzzer target: the ownership protocol's datagrams (common/peer_wire.h).
// The input is signed with the test key so the parser behind the HMAC is
// reached; a message that decodes must encode and decode back to itself.
// Unsigned input is also fed as is (must be refused, never crash).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "nsegress/common/peer_wire.h"

using namespace nsegress;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string key = "fuzz-key-0123456789abcdef";
  const std::string body(reinterpret_cast<const char*>(data), size);
  (void)ownership::decode(body, key);  // unsigned: refused
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data, size, mac, &len);
  const std::string signed_ = "NSE1" + std::string(reinterpret_cast<char*>(mac), len) + body;
  auto m = ownership::decode(signed_, key);
  if (!m) return 0;
  auto round = ownership::decode(ownership::encode(*m, key), key);
  if (!round || !(*round == *m)) abort();
  return 0;
}
