// Test certificates made in memory with OpenSSL (EC P-256): a CA, and
// certificates it signs for a server or a client. Test-only.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <memory>
#include <string>

namespace nsegress::testing {

struct Pem {
  std::string cert, key;
};

class TestCa {
 public:
  explicit TestCa(const std::string& cn = "nsegress test CA") {
    key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    cert_ = make(cn, key_, nullptr, true);
  }
  ~TestCa() {
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;
  std::string certPem() const { return pem(cert_); }
  // A certificate for `cn` (also its DNS SAN), signed by this CA.
  Pem issue(const std::string& cn, long serial = 2) const {
    EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* c = make(cn, k, this, false, serial);
    Pem p{pem(c), keyPem(k)};
    X509_free(c);
    EVP_PKEY_free(k);
    return p;
  }

 private:
  X509* make(const std::string& cn, EVP_PKEY* k, const TestCa* issuer, bool ca,
             long serial = 1) const {
    X509* c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), -60);
    X509_gmtime_adj(X509_getm_notAfter(c), 3600);
    X509_set_pubkey(c, k);
    X509_NAME* name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer->cert_) : name);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer->cert_ : c, c, nullptr, nullptr, 0);
    auto ext = [&](int nid, const std::string& value) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
      X509_add_ext(c, e, -1);
      X509_EXTENSION_free(e);
    };
    ext(NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (ca) ext(NID_key_usage, "critical,keyCertSign,cRLSign");
    if (!ca) ext(NID_subject_alt_name, "DNS:" + cn + ",IP:127.0.0.1");
    X509_sign(c, issuer ? issuer->key_ : k, EVP_sha256());
    return c;
  }
  static std::string pem(X509* c) {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, c);
    return drain(b);
  }
  static std::string keyPem(EVP_PKEY* k) {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
    return drain(b);
  }
  static std::string drain(BIO* b) {
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<size_t>(n));
    BIO_free(b);
    return s;
  }
  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
};

inline void writeText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

// The value of an Authorization header for HTTP basic.
inline std::string basicAuth(const std::string& user, const std::string& password) {
  const std::string in = user + ":" + password;
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return "Basic " + out;
}

}  // namespace nsegress::testing
