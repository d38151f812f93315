#include "nsegress/controller/objects.h"

#include <algorithm>
#include <ctime>

namespace nsegress::controller {

bool Selector::matches(const Labels& labels) const {
  for (const auto& r : requirements) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    switch (r.op) {
      case Requirement::Op::kExists:
        if (!has) return false;
        break;
      case Requirement::Op::kDoesNotExist:
        if (has) return false;
        break;
      case Requirement::Op::kIn:
        if (!has || std::find(r.values.begin(), r.values.end(), it->second) == r.values.end())
          return false;
        break;
      case Requirement::Op::kNotIn:
        if (has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end())
          return false;
        break;
    }
  }
  return true;
}

bool Pool::contains(const IpAddress& a) const {
  return std::any_of(ranges.begin(), ranges.end(), [&](const auto& r) { return r.contains(a); });
}

bool Pool::excludes(const IpAddress& a) const {
  return std::any_of(excluded.begin(), excluded.end(),
                     [&](const auto& r) { return r.contains(a); });
}

namespace {
uint64_t span(const AddressRange& r) {
  // Difference of the low 64 bits (pools are small; IPv6 pools are capped by validation).
  uint64_t a = 0, b = 0;
  const size_t n = r.first.size();
  for (size_t i = n >= 8 ? n - 8 : 0; i < n; ++i) {
    a = (a << 8) | r.first.bytes()[i];
    b = (b << 8) | r.last.bytes()[i];
  }
  return b - a + 1;
}
}  // namespace

uint64_t Pool::size() const {
  uint64_t n = 0;
  for (const auto& r : ranges) n += span(r);
  for (const auto& e : excluded)
    for (const auto& r : ranges) {
      IpAddress lo = std::max(e.first, r.first), hi = std::min(e.last, r.last);
      if (lo.family() == hi.family() && lo <= hi) n -= std::min(n, span({lo, hi}));
    }
  return n;
}

std::string toString(AddressState s) {
  switch (s) {
    case AddressState::kAssigned:
      return "Assigned";
    case AddressState::kQuarantined:
      return "Quarantined";
    case AddressState::kFree:
      return "Free";
  }
  return "?";
}

std::optional<AddressState> addressStateFrom(const std::string& s) {
  if (s == "Assigned") return AddressState::kAssigned;
  if (s == "Quarantined") return AddressState::kQuarantined;
  if (s == "Free") return AddressState::kFree;
  return std::nullopt;
}

std::string formatTime(Seconds t) {
  if (t <= 0) return "";
  char buf[32];
  time_t tt = static_cast<time_t>(t);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", gmtime(&tt));
  return buf;
}

}  // namespace nsegress::controller
