#include "nsegress/http/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>
#include <set>

namespace nsegress::http {

using nlohmann::json;

std::string sha256Raw(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(md), n);
}

namespace {

bool equalDigests(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::string> fromHex(const std::string& h) {
  if (h.size() != 64) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < h.size(); i += 2) {
    int v = 0;
    for (char c : h.substr(i, 2)) {
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return std::nullopt;
    }
    out += static_cast<char>(v);
  }
  return out;
}

// A name as it may appear in logs and a basic-auth user: printable ASCII,
// no colon (basic auth splits on the first one), no space.
bool goodName(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || c == ':') return false;
  return true;
}

std::optional<std::string> base64Decode(std::string_view in) {
  namespace b64 = boost::beast::detail::base64;
  if (in.size() > 1024 || in.size() % 4 != 0) return std::nullopt;
  for (char c : in)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '='))
      return std::nullopt;
  std::string out(b64::decoded_size(in.size()), '\0');
  auto [written, read] = b64::decode(out.data(), in.data(), in.size());
  // Everything read but the padding, and '=' only at the end.
  const size_t pad = in.size() - in.find_last_not_of('=') - 1;
  if (pad > 2 || read + pad != in.size() || in.substr(0, in.size() - pad).find('=') != in.npos)
    return std::nullopt;
  out.resize(written);
  return out;
}

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

}  // namespace

Result<Credentials> Credentials::fromTree(const json& tree) {
  const auto bad = [](const std::string& where, const std::string& what) {
    return makeError(EINVAL, where + ": " + what);
  };
  if (!tree.is_object() || tree.size() != 1 || !tree.contains("principals") ||
      !tree["principals"].is_array())
    return bad("credentials", "expected one key, principals, holding a list");
  const auto& list = tree["principals"];
  if (list.size() > kMaxPrincipals)
    return bad("credentials", "more than " + std::to_string(kMaxPrincipals) + " principals");
  Credentials c;
  std::set<std::string> names, secrets;
  static const std::set<std::string> kSecretKeys = {"password", "passwordSha256", "token",
                                                    "tokenSha256", "certCN"};
  static const std::set<std::string> kKeys = {"name",           "role",  "pools",       "password",
                                              "passwordSha256", "token", "tokenSha256", "certCN"};
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& e = list[i];
    std::string where = "principal " + std::to_string(i + 1);
    if (!e.is_object()) return bad(where, "expected a map");
    for (const auto& [k, v] : e.items())
      if (!kKeys.count(k)) return bad(where, "unknown key " + k.substr(0, 64));
    if (!e.contains("name") || !e["name"].is_string() || !goodName(e["name"]))
      return bad(where, "name: 1-128 printable characters, no space or colon");
    Entry en;
    en.principal.name = e["name"];
    where += " (" + en.principal.name + ")";
    if (!names.insert(en.principal.name).second) return bad(where, "name given twice");
    const std::string role = e.contains("role") && e["role"].is_string() ? e["role"] : "";
    if (role != "read" && role != "write") return bad(where, "role: read or write");
    en.principal.write = role == "write";
    if (e.contains("pools")) {
      if (!e["pools"].is_array() || e["pools"].empty() || e["pools"].size() > 1000)
        return bad(where, "pools: a non-empty list of pool names");
      for (const auto& p : e["pools"]) {
        if (!p.is_string() || !goodName(p)) return bad(where, "pools: a non-empty list of names");
        en.principal.pools.push_back(p);
      }
      if (en.principal.write) return bad(where, "a write role cannot be limited to pools");
    }
    int secrets_given = 0;
    for (const auto& k : kSecretKeys) {
      if (!e.contains(k)) continue;
      ++secrets_given;
      if (!e[k].is_string()) return bad(where, k + ": expected a string");
      const std::string v = e[k];
      if (k == "password" || k == "token") {
        if (v.size() < 12 || v.size() > 1024)
          return bad(where, k + ": 12 to 1024 bytes (a random secret)");
        // No client can send a control byte in a header (a newline would
        // also split a token file's first line).
        for (unsigned char c : v)
          if (c < 0x20 || c == 0x7f) return bad(where, k + ": no control characters");
        en.digest = sha256Raw(v);
      } else if (k == "certCN") {
        if (v.empty() || v.size() > 256) return bad(where, "certCN: 1-256 characters");
        en.digest = v;
      } else {
        auto d = fromHex(v);
        if (!d) return bad(where, k + ": expected 64 hex digits");
        en.digest = *d;
      }
      en.kind = k.starts_with("password") ? Kind::kBasic
                : k.starts_with("token")  ? Kind::kBearer
                                          : Kind::kCert;
    }
    if (secrets_given != 1)
      return bad(where, "exactly one of password, passwordSha256, token, tokenSha256, certCN");
    // One secret names one principal (a token shared by two would make
    // the role depend on the file's order).
    if (en.kind != Kind::kBasic &&
        !secrets.insert(std::to_string(static_cast<int>(en.kind)) + en.digest).second)
      return bad(where, "the same token or certificate CN as another principal");
    c.entries_.push_back(std::move(en));
  }
  return c;
}

std::optional<Principal> Credentials::authenticate(const HttpRequest& req) const {
  // Two Authorization headers: which one counts would be a guess (a proxy
  // and the server could disagree) — neither does.
  size_t given = 0;
  for (const auto& [k, v] : req.headers.items())
    given += k.size() == 13 && startsWithNoCase(k, "authorization");
  if (given > 1) return std::nullopt;
  const auto auth = req.headers.get("authorization");
  if (auth && auth->size() <= 2048) {
    if (startsWithNoCase(*auth, "basic ")) {
      auto decoded = base64Decode(std::string_view(*auth).substr(6));
      if (!decoded) return std::nullopt;
      const auto colon = decoded->find(':');
      if (colon == std::string::npos) return std::nullopt;
      const std::string user = decoded->substr(0, colon);
      const std::string digest = sha256Raw(std::string_view(*decoded).substr(colon + 1));
      for (const auto& e : entries_)
        if (e.kind == Kind::kBasic && e.principal.name == user && equalDigests(e.digest, digest))
          return e.principal;
      return std::nullopt;
    }
    if (startsWithNoCase(*auth, "bearer ")) {
      const std::string digest = sha256Raw(std::string_view(*auth).substr(7));
      // Every entry compared: the time does not tell which one matched.
      const Entry* found = nullptr;
      for (const auto& e : entries_)
        if (e.kind == Kind::kBearer && equalDigests(e.digest, digest)) found = &e;
      if (found) return found->principal;
      return std::nullopt;
    }
    return std::nullopt;  // another scheme, or garbage: not a fallback to the certificate
  }
  if (auth) return std::nullopt;
  if (!req.client_cert_cn.empty())
    for (const auto& e : entries_)
      if (e.kind == Kind::kCert && e.digest == req.client_cert_cn) return e.principal;
  return std::nullopt;
}

}  // namespace nsegress::http
