#include "nsegress/http/tls.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

namespace nsegress::http {

namespace ssl = boost::asio::ssl;

namespace {
constexpr size_t kMaxPemBytes = 1 << 20;
}  // namespace

std::vector<FileStamp> TlsContext::stamps() const {
  // A file that cannot be stat'ed (mid-swap) has an empty stamp: a change.
  std::vector<FileStamp> s{statFile(files_.cert).value_or(FileStamp{}),
                           statFile(files_.key).value_or(FileStamp{})};
  if (!files_.client_ca.empty()) s.push_back(statFile(files_.client_ca).value_or(FileStamp{}));
  return s;
}

Result<TlsContext::Built> TlsContext::build() const {
  Built b;
  b.stamps = stamps();
  // Read as hostile files (bounded, regular files only), then handed to
  // OpenSSL from memory.
  auto cert = readFileBounded(files_.cert, kMaxPemBytes);
  if (!cert) return cert.error();
  auto key = readFileBounded(files_.key, kMaxPemBytes);
  if (!key) return key.error();
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use | ssl::context::no_compression,
                   ec);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(native, "ECDHE+AESGCM:ECDHE+CHACHA20");
  ctx->use_certificate_chain(boost::asio::buffer(cert->text), ec);
  if (ec)
    return makeError(EINVAL, files_.cert + ": not a PEM certificate chain (" + ec.message() + ")");
  ctx->use_private_key(boost::asio::buffer(key->text), ssl::context::pem, ec);
  if (ec) return makeError(EINVAL, files_.key + ": not a PEM private key (" + ec.message() + ")");
  if (SSL_CTX_check_private_key(native) != 1)
    return makeError(EINVAL, files_.key + ": does not match the certificate in " + files_.cert);
  if (!files_.client_ca.empty()) {
    auto ca = readFileBounded(files_.client_ca, kMaxPemBytes);
    if (!ca) return ca.error();
    ctx->add_certificate_authority(boost::asio::buffer(ca->text), ec);
    if (ec)
      return makeError(EINVAL, files_.client_ca + ": not a PEM CA bundle (" + ec.message() + ")");
    // Certificates are asked for and verified when sent; a client without
    // one may still use basic or bearer credentials.
    ctx->set_verify_mode(ssl::verify_peer, ec);
    SSL_CTX_set_verify_depth(native, 4);
    // A session id context is needed with client verification and
    // session resumption.
    static const unsigned char kSid[] = "nsegress";
    SSL_CTX_set_session_id_context(native, kSid, sizeof kSid - 1);
  }
  b.ctx = std::move(ctx);
  return b;
}

Result<std::shared_ptr<TlsContext>> TlsContext::load(TlsFiles files) {
  if (files.cert.empty() || files.key.empty())
    return makeError(EINVAL, "TLS needs a certificate and a key file");
  std::shared_ptr<TlsContext> t(new TlsContext(std::move(files)));
  auto b = t->build();
  if (!b) return b.error();
  t->ctx_ = std::move(b->ctx);
  t->stamps_ = std::move(b->stamps);
  t->last_check_ = std::chrono::steady_clock::now();
  return t;
}

std::shared_ptr<ssl::context> TlsContext::current() {
  std::lock_guard l(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_check_ < std::chrono::seconds(1)) return ctx_;
  last_check_ = now;
  if (stamps() == stamps_) return ctx_;
  auto b = build();
  if (!b) {
    // Keep serving with the last good certificate; try again when the
    // files change again.
    ++failures_;
    stamps_ = stamps();
    spdlog::error("TLS reload failed, keeping the previous certificate: {}", b.error().message);
    return ctx_;
  }
  ++reloads_;
  ctx_ = std::move(b->ctx);
  stamps_ = std::move(b->stamps);
  spdlog::info("TLS certificate reloaded from {}", files_.cert);
  return ctx_;
}

void TlsContext::checkNow() {
  std::lock_guard l(mu_);
  last_check_ = {};
}
uint64_t TlsContext::reloads() const {
  std::lock_guard l(mu_);
  return reloads_;
}
uint64_t TlsContext::reloadFailures() const {
  std::lock_guard l(mu_);
  return failures_;
}

std::string verifiedClientCn(const void* p) {
  auto* s = static_cast<SSL*>(const_cast<void*>(p));
  X509* cert = SSL_get1_peer_certificate(s);
  if (!cert) return "";
  std::string cn;
  if (SSL_get_verify_result(s) == X509_V_OK) {
    char buf[257] = {};
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
    if (n > 0 && static_cast<size_t>(n) < sizeof buf) cn.assign(buf, static_cast<size_t>(n));
  }
  X509_free(cert);
  return cn;
}

}  // namespace nsegress::http
