// Small text encodings shared by the API client, the HTTP seam, the CLI and
// the feeds: percent-encoding (RFC 3986) and lowercase hex.
#pragma once

#include <cctype>
#include <string>
#include <string_view>

namespace nsegress {

// Unreserved characters as they are, every other byte %XX: the result is one
// query value or path segment (it never adds a parameter or ends a line).
inline std::string percentEncode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// "%3D" → "="; a malformed escape stays as sent (the caller then refuses
// the value). '+' is not a space here.
inline std::string percentDecode(std::string_view s) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && val(s[i + 1]) >= 0 && val(s[i + 2]) >= 0) {
      out += static_cast<char>(val(s[i + 1]) * 16 + val(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Bytes as lowercase hex.
inline std::string hexEncode(std::string_view bytes) {
  static const char* d = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

}  // namespace nsegress
