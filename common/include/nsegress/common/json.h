// Hostile-input JSON: parsing bounded before any tree is built (size, depth,
// count of values), duplicate keys refused (a later "namespaces": [] must not
// silently win over the real list), invalid UTF-8 refused. Every JSON input
// of nsegress (desired state, the API server's answers, request bodies) goes
// through parseJson; nlohmann's own parse is never called on outside input.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "nsegress/common/result.h"

namespace nsegress {

struct JsonLimits {
  size_t max_bytes = 64u << 20;
  size_t max_depth = 64;
  size_t max_values = 4'000'000;  // scalars, arrays and objects together
};

// The document, or why not: "at byte 17: ...", "nested deeper than 64",
// "duplicate key \"namespaces\"", "larger than 65536 bytes".
Result<nlohmann::json> parseJson(std::string_view text, const JsonLimits& limits = {});

// parseJson for code that only checks the shape of what it got: a value
// that is_discarded() (and so no object, array or string) on any error.
nlohmann::json parseJsonOrDiscarded(std::string_view text, const JsonLimits& limits = {});

// Well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool validUtf8(std::string_view s);

// Serializes without ever throwing: invalid UTF-8 in a string (which only an
// internal bug could put there, since parseJson refuses it) is replaced.
std::string dumpJson(const nlohmann::json& j, int indent = -1);

}  // namespace nsegress
