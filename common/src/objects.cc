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

using u128 = unsigned __int128;

u128 toInt(const IpAddress& a) {
  u128 v = 0;
  for (size_t i = 0; i < a.size(); ++i) v = (v << 8) | a.bytes()[i];
  return v;
}

IpAddress fromInt(u128 v, Family f) {
  uint8_t b[16] = {};
  const size_t n = f == Family::V4 ? 4 : 16;
  for (size_t i = n; i-- > 0;) {
    b[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return IpAddress::fromBytes(f, b);
}

// Disjoint, sorted ranges of one family covering what `in` covers.
std::vector<std::pair<u128, u128>> merged(const std::vector<AddressRange>& in, Family f) {
  std::vector<std::pair<u128, u128>> v;
  for (const auto& r : in)
    if (r.first.family() == f && r.first <= r.last) v.emplace_back(toInt(r.first), toInt(r.last));
  std::sort(v.begin(), v.end());
  std::vector<std::pair<u128, u128>> out;
  for (const auto& [lo, hi] : v) {
    if (!out.empty() && lo <= out.back().second + 1 && out.back().second + 1 != 0) {
      out.back().second = std::max(out.back().second, hi);
    } else if (!out.empty() && out.back().second == ~u128{0}) {
      continue;  // everything after is covered
    } else {
      out.emplace_back(lo, hi);
    }
  }
  return out;
}

}  // namespace

uint64_t Pool::size() const {
  // Exact, on 128 bits: ranges and exclusions merged first (overlaps count
  // once), then saturated (an IPv6 /64 is 2^64 addresses: reported as the
  // largest uint64).
  u128 total = 0;
  for (Family f : {Family::V4, Family::V6}) {
    const auto rs = merged(ranges, f), ex = merged(excluded, f);
    for (const auto& [lo, hi] : rs) {
      u128 n = hi - lo + 1;  // wraps to 0 only for the whole IPv6 space (refused by validation)
      for (const auto& [elo, ehi] : ex) {
        const u128 a = std::max(lo, elo), b = std::min(hi, ehi);
        if (a <= b) n -= b - a + 1;
      }
      total += n;
    }
  }
  return total > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(total);
}

std::optional<IpAddress> Pool::lowestFree(
    const std::function<bool(const IpAddress&)>& taken,
    const std::function<std::optional<IpAddress>(const IpAddress&)>& next_taken) const {
  // Walks the ranges in address order, jumping over exclusions and runs of
  // taken addresses: O((exclusions + taken) log), never a scan of the pool.
  std::vector<AddressRange> sorted = ranges;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  for (Family f : {Family::V4, Family::V6}) {
    const auto ex = merged(excluded, f);
    for (const auto& r : sorted) {
      if (r.first.family() != f) continue;
      IpAddress cur = r.first;
      for (;;) {
        if (r.last < cur) break;
        const u128 c = toInt(cur);
        // An exclusion covering cur: jump past it.
        auto it = std::upper_bound(ex.begin(), ex.end(), std::make_pair(c, ~u128{0}));
        if (it != ex.begin() && std::prev(it)->second >= c) {
          const u128 end = std::prev(it)->second;
          if (end >= toInt(r.last)) break;
          cur = fromInt(end + 1, f);
          continue;
        }
        if (!taken(cur)) return cur;
        // Skip the run of taken addresses starting at cur.
        IpAddress last = cur;
        for (;;) {
          auto n = next_taken(last);
          if (!n || *n != last.plus(1) || r.last < *n) break;
          last = *n;
        }
        if (!(last < r.last)) break;
        cur = last.plus(1);
      }
    }
  }
  return std::nullopt;
}

namespace {
struct Special {
  const char* cidr;
  const char* what;
};
// Addresses that must never be an egress address.
constexpr Special kSpecial[] = {
    {"0.0.0.0/8", "\"this network\" addresses (0.0.0.0/8)"},
    {"127.0.0.0/8", "loopback addresses (127.0.0.0/8)"},
    {"169.254.0.0/16", "link-local addresses (169.254.0.0/16)"},
    {"224.0.0.0/4", "multicast addresses (224.0.0.0/4)"},
    {"240.0.0.0/4", "reserved and broadcast addresses (240.0.0.0/4)"},
    {"::/128", "the unspecified address (::)"},
    {"::1/128", "the loopback address (::1)"},
    {"::ffff:0:0/96", "IPv4-mapped addresses (::ffff:0:0/96)"},
    {"fe80::/10", "link-local addresses (fe80::/10)"},
    {"ff00::/8", "multicast addresses (ff00::/8)"},
};
}  // namespace

std::optional<std::string> unusableEgress(const AddressRange& r) {
  for (const auto& s : kSpecial) {
    const auto c = *Cidr::parse(s.cidr);
    if (c.network().family() != r.first.family()) continue;
    if (!(r.last < c.network()) && !(c.last() < r.first)) return std::string(s.what);
  }
  return std::nullopt;
}

void markOverlappingPools(std::map<std::string, Pool>& pools) {
  std::map<std::string, std::string> overlaps;  // pool -> a pool it overlaps
  for (auto a = pools.begin(); a != pools.end(); ++a) {
    if (a->second.invalid) continue;
    for (auto b = std::next(a); b != pools.end(); ++b) {
      if (b->second.invalid) continue;
      for (const auto& ra : a->second.ranges)
        for (const auto& rb : b->second.ranges)
          if (ra.first.family() == rb.first.family() && !(ra.last < rb.first) &&
              !(rb.last < ra.first)) {
            overlaps.emplace(a->first, b->first);
            overlaps.emplace(b->first, a->first);
          }
    }
  }
  // Both are refused: which one a shared address belongs to would be a
  // guess. Their tenants keep what they hold; new requests wait.
  for (const auto& [p, other] : overlaps)
    pools[p].invalid = "its addresses overlap pool " + other +
                       "'s: an address must belong to one pool (fix either pool)";
}

std::string toString(AddressState s) {
  switch (s) {
    case AddressState::kAssigned:
      return "Assigned";
    case AddressState::kPendingFirewallCleanup:
      return "PendingFirewallCleanup";
    case AddressState::kQuarantined:
      return "Quarantined";
    case AddressState::kFree:
      return "Free";
  }
  return "?";
}

std::optional<AddressState> addressStateFrom(const std::string& s) {
  if (s == "Assigned") return AddressState::kAssigned;
  if (s == "PendingFirewallCleanup") return AddressState::kPendingFirewallCleanup;
  if (s == "Quarantined") return AddressState::kQuarantined;
  if (s == "Free") return AddressState::kFree;
  return std::nullopt;
}

std::string formatTime(Seconds t) {
  // Times outside years 1970..9999 are not times nsegress writes; an input
  // that asks for one gets "" (never a null from gmtime into strftime).
  if (t <= 0 || t > kMaxTime) return "";
  char buf[32];
  const time_t tt = static_cast<time_t>(t);
  std::tm tm{};
  if (!gmtime_r(&tt, &tm)) return "";
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
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
  // A day the month does not have (2026-02-30) is refused, not carried over.
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDays[mo - 1] || (mo == 2 && d == 29 && !leap)) return std::nullopt;
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

std::string egressLeaseName(const IpAddress& ip) {
  std::string s = ip.str();
  for (char& c : s)
    if (c == '.' || c == ':') c = '-';
  return "nsegress-egress-" + s;
}

}  // namespace nsegress
