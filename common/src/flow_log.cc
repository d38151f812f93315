#include "nsegress/common/flow_log.h"

#include <algorithm>
#include <charconv>

#include "nsegress/common/desired_state.h"

namespace nsegress::flowlog {

namespace {

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (true) {
    const size_t tab = line.find('\t', i);
    out.push_back(line.substr(i, tab == line.npos ? line.npos : tab - i));
    if (tab == line.npos) break;
    i = tab + 1;
  }
  return out;
}

template <typename T>
std::optional<T> number(std::string_view s) {
  T v{};
  if (s.empty() || s.size() > 20 || !(s[0] >= '0' && s[0] <= '9')) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

Error bad(const std::string& field, std::string_view value) {
  return makeError(
      EINVAL, "flow log: " + field + ": \"" + std::string(value.substr(0, 64)) + "\" is not valid");
}

}  // namespace

std::string format(const Record& r) {
  std::string out(1, static_cast<char>(r.kind));
  out += '\t' + std::to_string(r.ms);
  switch (r.kind) {
    case Record::Kind::kResync:
    case Record::Kind::kLost:
      break;
    case Record::Kind::kStart:
      out += '\t' + r.node;
      break;
    default:
      out += '\t' + std::to_string(r.proto) + '\t' + r.egress.str() + '\t' +
             std::to_string(r.nat_port) + '\t' + r.pod.str() + '\t' + std::to_string(r.sport) +
             '\t' + r.dst.str() + '\t' + std::to_string(r.dport) + '\t' + r.ns;
  }
  return out + '\n';
}

Result<Record> parse(std::string_view line) {
  if (line.size() > kMaxLine) return makeError(EINVAL, "flow log: a line over 512 bytes");
  const auto f = fields(line);
  if (f[0].size() != 1) return bad("kind", f[0]);
  Record r;
  r.kind = static_cast<Record::Kind>(f[0][0]);
  size_t want = 0;
  switch (r.kind) {
    case Record::Kind::kNew:
    case Record::Kind::kDestroy:
    case Record::Kind::kExists:
      want = 10;
      break;
    case Record::Kind::kResync:
    case Record::Kind::kLost:
      want = 2;
      break;
    case Record::Kind::kStart:
      want = 3;
      break;
    default:
      return bad("kind", f[0]);
  }
  if (f.size() != want)
    return makeError(EINVAL, "flow log: " + std::string(1, f[0][0]) + " record with " +
                                 std::to_string(f.size()) + " fields, not " + std::to_string(want));
  auto ms = number<int64_t>(f[1]);
  if (!ms || *ms > int64_t{253402300799} * 1000) return bad("ms", f[1]);
  r.ms = *ms;
  if (r.kind == Record::Kind::kStart) {
    if (!isDnsSubdomain(f[2])) return bad("node", f[2]);
    r.node = std::string(f[2]);
    return r;
  }
  if (want == 2) return r;
  auto proto = number<unsigned>(f[2]);
  if (!proto || (*proto != 6 && *proto != 17)) return bad("proto", f[2]);
  r.proto = static_cast<uint8_t>(*proto);
  auto port = [&](std::string_view s, const char* name) -> Result<uint16_t> {
    auto p = number<unsigned>(s);
    if (!p || *p > 65535) return bad(name, s);
    return static_cast<uint16_t>(*p);
  };
  auto addr = [&](std::string_view s, const char* name) -> Result<IpAddress> {
    auto a = IpAddress::parse(std::string(s));
    if (!a) return bad(name, s);
    return *a;
  };
  auto egress = addr(f[3], "egress");
  auto nat_port = port(f[4], "nat_port");
  auto pod = addr(f[5], "pod");
  auto sport = port(f[6], "sport");
  auto dst = addr(f[7], "dst");
  auto dport = port(f[8], "dport");
  for (auto* e : {&egress, &pod, &dst})
    if (!*e) return e->error();
  for (auto* p : {&nat_port, &sport, &dport})
    if (!*p) return p->error();
  if (egress->family() != pod->family() || egress->family() != dst->family())
    return makeError(EINVAL, "flow log: addresses of mixed families");
  if (!isDnsLabel(f[9])) return bad("namespace", f[9]);
  r.egress = *egress, r.nat_port = *nat_port, r.pod = *pod, r.sport = *sport, r.dst = *dst;
  r.dport = *dport;
  r.ns = std::string(f[9]);
  return r;
}

std::string segmentName(int64_t ms) {
  return "flows-" + std::to_string(ms / 3'600'000) + ".log";
}

std::optional<int64_t> segmentHour(std::string_view name) {
  if (!name.starts_with("flows-") || !name.ends_with(".log")) return std::nullopt;
  return number<int64_t>(name.substr(6, name.size() - 10));
}

WhoHeld::WhoHeld(IpAddress egress, uint16_t port, int64_t at_ms,
                 std::optional<std::pair<IpAddress, uint16_t>> dst)
    : egress_(egress), port_(port), at_(at_ms), dst_(std::move(dst)) {}

bool WhoHeld::matches(const Record& r) const {
  return r.egress == egress_ && r.nat_port == port_ &&
         (!dst_ || (r.dst == dst_->first && r.dport == dst_->second));
}

void WhoHeld::add(const Record& r) {
  if (r.ms > at_) return;
  using K = Record::Kind;
  auto same = [&](const Open& o) {
    return o.rec.proto == r.proto && o.rec.pod == r.pod && o.rec.sport == r.sport &&
           o.rec.dst == r.dst && o.rec.dport == r.dport;
  };
  // A resync's E records end at the first record of another kind: flows it
  // did not list ended by then.
  if (in_resync_ && r.kind != K::kExists) {
    std::erase_if(open_, [](const Open& o) { return !o.listed; });
    in_resync_ = false;
  }
  switch (r.kind) {
    case K::kNew:
      if (!matches(r)) return;
      std::erase_if(open_, same);
      open_.push_back({r, true, true});
      return;
    case K::kDestroy:
      std::erase_if(open_, same);
      return;
    case K::kExists: {
      if (!matches(r)) return;
      auto it = std::find_if(open_.begin(), open_.end(), same);
      if (it != open_.end())
        it->listed = true;
      else
        open_.push_back({r, false, true});
      return;
    }
    case K::kResync:
      in_resync_ = true;
      resynced_ = true;
      open_gap_ = false;
      for (auto& o : open_) o.listed = false;
      return;
    case K::kLost:
    case K::kStart:
      gaps_.push_back(r.ms);
      open_gap_ = true;
      if (r.kind == K::kStart) open_.clear();  // a start is followed by a resync
      return;
  }
}

std::vector<Holder> WhoHeld::holders() const {
  std::vector<Holder> out;
  // (A resync still listing at `at` may list the others after it: kept.)
  for (const auto& o : open_) out.push_back({o.rec, o.start_known});
  return out;
}

}  // namespace nsegress::flowlog
