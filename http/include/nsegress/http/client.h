// A small HTTP/1.1 client (Boost.Beast; TLS through OpenSSL with the
// server's name verified): one request per connection, bounded in time and
// in the size of the answer. Used for webhooks.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "nsegress/common/result.h"
#include "nsegress/http/http.h"

namespace nsegress::http {

struct Url {
  bool tls = false;
  std::string host;  // a name or an address ("[v6]" without the brackets)
  uint16_t port = 0;
  std::string target;  // path and query, "/" at least
  // Strict: http or https (any case), a host, an optional port, no user
  // info, no fragment, printable ASCII only, at most 2048 bytes.
  static Result<Url> parse(const std::string& s);
  // scheme://host:port/path — without the query (which may hold a secret),
  // for logs and metric labels.
  std::string redacted() const;
};

struct ClientOptions {
  std::chrono::milliseconds timeout{10'000};  // connect, TLS, send and answer in all
  std::string ca_file;                        // empty: the system's CAs
  size_t max_response_bytes = 64 * 1024;
};

struct ClientResponse {
  int status = 0;
  std::string body;
};

// Sends `method target` with `headers` and `body`; an error for anything
// short of a complete HTTP answer (any status).
Result<ClientResponse> request(const Url& url, const std::string& method,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               const std::string& body, const ClientOptions& o = {});

}  // namespace nsegress::http
