#include "nsegress/common/json.h"

#include <vector>

namespace nsegress {

using nlohmann::json;

namespace {

// Builds the tree like nlohmann's DOM parser, counting as it goes, and stops
// at the first limit or duplicate key (the SAX parser itself is iterative,
// so depth costs no stack).
class BoundedSax : public nlohmann::json_sax<json> {
 public:
  explicit BoundedSax(const JsonLimits& l) : l_(l) {}
  bool null() override { return value(nullptr); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override { return value(v); }
  bool number_unsigned(number_unsigned_t v) override { return value(v); }
  bool number_float(number_float_t v, const string_t&) override { return value(v); }
  bool string(string_t& v) override { return value(std::move(v)); }
  bool binary(binary_t&) override { return fail("binary values are not JSON"); }
  bool start_object(std::size_t) override { return open(json::object()); }
  bool key(string_t& k) override {
    json& obj = *stack_.back();
    if (obj.contains(k)) return fail("duplicate key \"" + k.substr(0, 64) + "\"");
    key_ = &obj[k];
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t pos, const std::string&,
                   const nlohmann::detail::exception& e) override {
    if (error_.empty()) {
      std::string what = e.what();
      // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
      if (auto p = what.find("parse error"); p != std::string::npos) what = what.substr(p);
      error_ = "at byte " + std::to_string(pos) + ": " + what;
    }
    return false;
  }

  json root;
  std::string error_;

 private:
  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  bool count() {
    if (++values_ > l_.max_values)
      return fail("more than " + std::to_string(l_.max_values) + " values");
    return true;
  }
  // Places `v` where the parser is (root, array element, object member).
  json* place(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    *key_ = std::move(v);
    return key_;
  }
  bool value(json&& v) {
    if (!count()) return false;
    place(std::move(v));
    return true;
  }
  bool open(json&& v) {
    if (!count()) return false;
    if (stack_.size() >= l_.max_depth)
      return fail("nested deeper than " + std::to_string(l_.max_depth));
    stack_.push_back(place(std::move(v)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  const JsonLimits& l_;
  std::vector<json*> stack_;
  json* key_ = nullptr;
  size_t values_ = 0;
};

}  // namespace

Result<json> parseJson(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes)
    return makeError(EFBIG, "larger than " + std::to_string(limits.max_bytes) + " bytes");
  BoundedSax sax(limits);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json, true);
  } catch (const std::exception& e) {
    return makeError(EINVAL, e.what());
  }
  if (!ok) return makeError(EINVAL, sax.error_.empty() ? "not valid JSON" : sax.error_);
  return std::move(sax.root);
}

json parseJsonOrDiscarded(std::string_view text, const JsonLimits& limits) {
  auto r = parseJson(text, limits);
  return r ? std::move(*r) : json(json::value_t::discarded);
}

bool validUtf8(std::string_view s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = p[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size() || (p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string dumpJson(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

}  // namespace nsegress
