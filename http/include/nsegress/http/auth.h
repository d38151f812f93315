// Credentials of the HTTP API and feeds: HTTP basic (what PAN-OS, FortiGate
// and Juniper send), bearer tokens, and client certificates (mTLS, by their
// verified subject CN). Each principal has a role (read: feeds and the read
// API; write: also state changes) and optionally a list of pools whose feeds
// are all it may read.
//
// The tree (YAML or JSON, read by the caller):
//   principals:
//     - name: panorama           # the basic-auth user name
//       password: <secret>       # or passwordSha256: <64 hex digits>
//       role: read               # read | write
//       pools: [payments]        # optional
//     - name: ops-bot
//       token: <secret>          # bearer; or tokenSha256: <64 hex digits>
//       role: write
//     - name: fw1.example.net
//       certCN: fw1.example.net  # a client certificate the TLS CA verified
//
// Secrets are kept only as SHA-256 digests in memory and compared in
// constant time; a secret in the clear must be at least 12 bytes. Nothing
// here logs a secret.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "nsegress/common/result.h"
#include "nsegress/http/http.h"

namespace nsegress::http {

class Credentials {
 public:
  // Strict: an unknown key, a missing or doubled secret, a bad role, a
  // duplicate name or secret is an error naming the principal (never its
  // secret).
  static Result<Credentials> fromTree(const nlohmann::json& tree);
  // The principal the request's credentials name, or nullopt (none given,
  // or wrong). Basic and bearer from the Authorization header, the
  // certificate from HttpRequest::client_cert_cn.
  std::optional<Principal> authenticate(const HttpRequest& req) const;
  size_t size() const { return entries_.size(); }

  static constexpr size_t kMaxPrincipals = 1000;

 private:
  enum class Kind { kBasic, kBearer, kCert };
  struct Entry {
    Kind kind;
    Principal principal;
    std::string digest;  // SHA-256 of the secret (basic, bearer); the CN (cert)
  };
  std::vector<Entry> entries_;
};

// SHA-256 of `data`, raw 32 bytes.
std::string sha256Raw(std::string_view data);

}  // namespace nsegress::http
