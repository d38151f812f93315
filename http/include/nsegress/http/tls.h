// The TLS side of a listener: a server certificate and key, optionally a CA
// whose client certificates are verified (mTLS), reloaded when their files
// change (checked at most once a second, at a new connection) so a renewed
// certificate needs no restart. A reload that fails keeps the last good
// context and is counted.
//
// TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE and AEAD ciphers only.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "nsegress/common/file.h"
#include "nsegress/common/result.h"

namespace nsegress::http {

struct TlsFiles {
  std::string cert;       // PEM chain, the server's certificate first
  std::string key;        // PEM private key
  std::string client_ca;  // PEM CA bundle; set: client certificates are verified
};

class TlsContext {
 public:
  static Result<std::shared_ptr<TlsContext>> load(TlsFiles files);
  // The context for a new connection (reloaded first if a file changed).
  std::shared_ptr<boost::asio::ssl::context> current();
  bool verifiesClients() const { return !files_.client_ca.empty(); }
  uint64_t reloads() const;
  uint64_t reloadFailures() const;
  // Forces the next current() to look at the files (tests).
  void checkNow();

 private:
  explicit TlsContext(TlsFiles f) : files_(std::move(f)) {}
  struct Built {
    std::shared_ptr<boost::asio::ssl::context> ctx;
    std::vector<FileStamp> stamps;
  };
  Result<Built> build() const;
  std::vector<FileStamp> stamps() const;

  const TlsFiles files_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
  std::vector<FileStamp> stamps_;
  std::chrono::steady_clock::time_point last_check_{};
  uint64_t reloads_ = 0, failures_ = 0;
};

// The verified client certificate's subject CN of a TLS connection, empty
// if none was sent or it did not verify.
std::string verifiedClientCn(const void* ssl /* SSL* */);

}  // namespace nsegress::http
