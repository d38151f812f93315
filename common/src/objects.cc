#include "nsegress/common/objects.h"

#include <algorithm>
#include <charconv>
#include <ctime>

namespace nsegress {

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

std::optional<Seconds> parseRfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fraction]Z
  auto digits = [&](size_t at, size_t n, int& out) {
    if (at + n > s.size()) return false;
    out = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!digits(0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(5, 2, mo) || s[7] != '-' ||
      !digits(8, 2, d) || (s[10] != 'T' && s[10] != 't') || !digits(11, 2, h) || s[13] != ':' ||
      !digits(14, 2, mi) || s[16] != ':' || !digits(17, 2, se))
    return std::nullopt;
  size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return std::nullopt;
  }
  if (i + 1 != s.size() || (s[i] != 'Z' && s[i] != 'z')) return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = se;
  return static_cast<Seconds>(timegm(&tm));
}

std::optional<Seconds> parseDuration(const std::string& s) {
  if (s.empty()) return std::nullopt;
  Seconds total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
    if (j == i || j == s.size()) return std::nullopt;
    int64_t n = 0;
    auto [p, ec] = std::from_chars(s.data() + i, s.data() + j, n);
    if (ec != std::errc() || n > 100000000) return std::nullopt;
    int64_t unit = 0;
    switch (s[j]) {
      case 'd':
        unit = 86400;
        break;
      case 'h':
        unit = 3600;
        break;
      case 'm':
        unit = 60;
        break;
      case 's':
        unit = 1;
        break;
      default:
        return std::nullopt;
    }
    total += n * unit;
    i = j + 1;
  }
  return total;
}

std::optional<AddressRange> parseAddressRange(const std::string& s) {
  if (s.find('/') != std::string::npos) {
    auto c = Cidr::parse(s);
    if (!c) return std::nullopt;
    if (!c->network().isV4() && c->prefix() < 64) return std::nullopt;  // bounded IPv6 pools
    return AddressRange{c->network(), c->last()};
  }
  auto dash = s.find('-');
  if (dash != std::string::npos) {
    auto a = IpAddress::parse(s.substr(0, dash)), b = IpAddress::parse(s.substr(dash + 1));
    if (!a || !b || a->family() != b->family() || *b < *a) return std::nullopt;
    return AddressRange{*a, *b};
  }
  auto a = IpAddress::parse(s);
  if (!a) return std::nullopt;
  return AddressRange{*a, *a};
}

Result<Pod> podFrom(std::string ns, std::string name, std::string node, std::string_view phase,
                    bool host_network, const std::vector<std::string>& ips) {
  Pod p{std::move(ns), std::move(name), std::move(node), {}};
  if (!podOwnsItsAddresses(phase, host_network)) return p;  // exists; the addresses are not its
  for (size_t j = 0; j < ips.size(); ++j) {
    auto a = IpAddress::parse(ips[j]);
    if (!a)
      return makeError(EINVAL, "status.podIPs[" + std::to_string(j) + "]: \"" + ips[j] +
                                   "\" is not an IP address");
    p.ips.push_back(*a);
  }
  return p;
}

}  // namespace nsegress
