#include "nsegress/gateway/flow_log.h"

#include <fcntl.h>
#include <poll.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "nsegress/common/json.h"

namespace nsegress::gateway {

namespace fs = std::filesystem;
using flowlog::Record;

namespace {
// A segment file, opened without following a symlink and without blocking
// on a FIFO planted at its path; only a regular file is used. `mode`: "a"
// (created 0600: the log names pods) or "r".
std::FILE* openSegment(const std::string& path, const char* mode, std::string& why) {
  const bool append = mode[0] == 'a';
  const int fd = ::open(
      path.c_str(),
      (append ? O_WRONLY | O_APPEND | O_CREAT : O_RDONLY) | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC,
      0600);
  if (fd < 0) {
    why = strerror(errno);
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    why = "not a regular file";
    return nullptr;
  }
  const int fl = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  std::FILE* f = ::fdopen(fd, mode);
  if (!f) {
    why = strerror(errno);
    ::close(fd);
  }
  return f;
}
}  // namespace

FlowLogWriter::FlowLogWriter(FlowLogOptions o, FlowLogStats& stats)
    : o_(std::move(o)), stats_(stats) {}

FlowLogWriter::~FlowLogWriter() {
  if (f_) std::fclose(f_);
}

Status FlowLogWriter::open() {
  std::error_code ec;
  if (fs::create_directories(o_.dir, ec))
    fs::permissions(o_.dir, fs::perms::owner_all, ec);  // the log names pods: owner only
  struct stat st {};
  if (::stat(o_.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return makeError(ENOTDIR, "flow log: " + o_.dir + " is not a directory");
  if (::access(o_.dir.c_str(), W_OK) != 0)
    return makeError(EACCES, "flow log: " + o_.dir + " is not writable");
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(o_.dir, ec))
    if (flowlog::segmentHour(e.path().filename().string())) total += e.file_size(ec);
  stats_.bytes = total;
  return okStatus();
}

bool FlowLogWriter::write(const Record& r) {
  const std::string name = flowlog::segmentName(r.ms);
  bool fresh = false;
  if (name != current_ || !f_) {
    if (f_) std::fclose(f_);
    const std::string path = o_.dir + "/" + name;
    std::string why;
    f_ = openSegment(path, "a", why);
    current_ = name;
    fresh = true;
    if (!f_) {
      stats_.write_errors++;
      if (!failing_)  // once per failing spell, not once per event
        spdlog::error("flow log: cannot open {}: {}", path, why);
      failing_ = true;
      current_.clear();
      return false;
    }
    failing_ = false;
  }
  const std::string line = flowlog::format(r);
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size())
    stats_.write_errors++;
  else
    stats_.bytes += line.size();
  return fresh;
}

void FlowLogWriter::flush() {
  if (f_ && std::fflush(f_) != 0) stats_.write_errors++;
}

void FlowLogWriter::enforceRetention(int64_t now_ms) {
  std::error_code ec;
  std::vector<std::pair<int64_t, fs::path>> segs;
  for (const auto& e : fs::directory_iterator(o_.dir, ec))
    if (auto h = flowlog::segmentHour(e.path().filename().string()))
      segs.emplace_back(*h, e.path());
  std::sort(segs.begin(), segs.end());
  uint64_t total = 0;
  for (const auto& [h, p] : segs) total += fs::file_size(p, ec);
  const int64_t oldest_kept_hour = (now_ms / 1000 - o_.retention_s) / 3600;
  for (const auto& [h, p] : segs) {
    if (p.filename() == current_) break;
    const bool old = h < oldest_kept_hour;
    if (!old && total <= o_.max_bytes) break;
    const uint64_t size = fs::file_size(p, ec);
    if (fs::remove(p, ec)) {
      total -= std::min(total, size);
      stats_.segments_deleted++;
    }
  }
  stats_.bytes = total;
}

FlowLog::FlowLog(FlowLogOptions o, ConntrackSyncKernel& kernel, std::function<int64_t()> now_ms)
    : o_(std::move(o)), kernel_(kernel), now_(std::move(now_ms)), writer_(o_, stats_) {}

FlowLog::~FlowLog() {
  stop();
}

Status FlowLog::begin() {
  if (auto r = writer_.open(); !r) return r;
  const int64_t ms = now_();
  Record s;
  s.kind = Record::Kind::kStart;
  s.ms = ms;
  s.node = o_.node;
  writer_.write(s);
  resync(ms);
  writer_.flush();
  last_flush_ = ms;
  return okStatus();
}

Status FlowLog::start() {
  if (auto r = begin(); !r) return r;
  thread_ = std::thread([this] {
    while (!stop_) {
      pollfd p{kernel_.eventFd(), POLLIN, 0};
      ::poll(&p, 1, 200);
      pump();
    }
    writer_.flush();
  });
  return okStatus();
}

void FlowLog::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void FlowLog::setState(const DesiredState& d) {
  std::map<IpAddress, std::string> m;
  for (const auto& ns : d.namespaces)
    for (const auto& e : {ns.egress_v4, ns.egress_v6})
      if (e) m[*e] = ns.name;
  std::lock_guard l(mu_);
  for (const auto& [ip, ns] : m)
    if (!egress_ns_.count(ip)) egress_grew_ = true;
  egress_ns_ = std::move(m);
}

void FlowLog::record(Record::Kind k, const ctsync::Flow& f, int64_t ms) {
  std::string ns;
  {
    std::lock_guard l(mu_);
    auto it = egress_ns_.find(f.egress);
    if (it == egress_ns_.end()) return;  // not an address this node hosts
    ns = it->second;
  }
  Record r{k, ms, f.proto, f.egress, f.nat_port, f.src, f.sport, f.dst, f.dport, ns, {}};
  if (writer_.write(r) && k != Record::Kind::kExists) resync(ms);  // a new segment: self-contained
  if (k == Record::Kind::kNew) stats_.new_flows++;
  if (k == Record::Kind::kDestroy) stats_.ended_flows++;
  if (k == Record::Kind::kExists) stats_.listed_flows++;
}

void FlowLog::resync(int64_t ms) {
  std::set<IpAddress> egress;
  {
    std::lock_guard l(mu_);
    for (const auto& [ip, ns] : egress_ns_) egress.insert(ip);
    egress_grew_ = false;
  }
  // The dump first: a resync that fails writes no R, so the gap before it
  // stays open in the log (the next loss or segment retries).
  std::vector<ctsync::Flow> flows;
  if (!egress.empty()) {
    auto d = kernel_.dump(egress);
    if (!d) {
      spdlog::warn("flow log: resync: {}", d.error().message);
      return;
    }
    flows = std::move(*d);
  }
  Record r;
  r.kind = Record::Kind::kResync;
  r.ms = ms;
  writer_.write(r);
  for (const auto& f : flows) record(Record::Kind::kExists, f, ms);
}

void FlowLog::pump() {
  auto ev = kernel_.readEvents();
  const int64_t ms = now_();
  if (!ev) {
    if (ev.error().code == ENOBUFS) {
      stats_.losses++;
      Record l;
      l.kind = Record::Kind::kLost;
      l.ms = ms;
      writer_.write(l);
      resync(ms);
    } else {
      spdlog::warn("flow log: {}", ev.error().message);
    }
  } else {
    for (const auto& c : *ev)
      record(c.op == ctsync::Op::kDelete ? Record::Kind::kDestroy : Record::Kind::kNew, c.flow, ms);
  }
  bool grew;
  {
    std::lock_guard l(mu_);
    grew = egress_grew_;
  }
  if (grew) resync(ms);  // an address taken over: its existing flows listed
  if (ms - last_flush_ >= 1000) {
    writer_.flush();
    writer_.enforceRetention(ms);
    last_flush_ = ms;
  }
}

namespace {
class FlowLogCollectable final : public prometheus::Collectable {
 public:
  explicit FlowLogCollectable(const FlowLogStats& s) : s_(s) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    auto one = [](const char* name, const char* help, prometheus::MetricType t, double v) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = t;
      prometheus::ClientMetric m;
      if (t == prometheus::MetricType::Counter)
        m.counter.value = v;
      else
        m.gauge.value = v;
      f.metric.push_back(m);
      return f;
    };
    using T = prometheus::MetricType;
    prometheus::MetricFamily flows;
    flows.name = "nsegress_gateway_flow_log_records_total";
    flows.help = "Flow log records written: flows begun, ended, listed by a resync";
    flows.type = T::Counter;
    for (auto [kind, v] :
         {std::pair{"new", s_.new_flows.load()}, std::pair{"ended", s_.ended_flows.load()},
          std::pair{"listed", s_.listed_flows.load()}}) {
      prometheus::ClientMetric m;
      m.label = {{"kind", kind}};
      m.counter.value = static_cast<double>(v);
      flows.metric.push_back(m);
    }
    return {flows,
            one("nsegress_gateway_flow_log_losses_total",
                "Times the kernel dropped conntrack events before the flow log read them "
                "(ENOBUFS; marked in the log and followed by a resync)",
                T::Counter, static_cast<double>(s_.losses.load())),
            one("nsegress_gateway_flow_log_write_errors_total", "Flow log writes that failed",
                T::Counter, static_cast<double>(s_.write_errors.load())),
            one("nsegress_gateway_flow_log_segments_deleted_total",
                "Hourly flow log segments deleted by retention (age or size)", T::Counter,
                static_cast<double>(s_.segments_deleted.load())),
            one("nsegress_gateway_flow_log_bytes", "Bytes of flow log kept", T::Gauge,
                static_cast<double>(s_.bytes.load()))};
  }

 private:
  const FlowLogStats& s_;
};
}  // namespace

std::shared_ptr<prometheus::Collectable> flowLogMetrics(const FlowLogStats& stats) {
  return std::make_shared<FlowLogCollectable>(stats);
}

Result<std::string> whoFromFlowLog(const std::string& dir, const IpAddress& egress, uint16_t port,
                                   int64_t at_ms,
                                   std::optional<std::pair<IpAddress, uint16_t>> dst) {
  const std::string path = dir + "/" + flowlog::segmentName(at_ms);
  std::string why;
  std::FILE* f = openSegment(path, "r", why);
  if (!f)
    return makeError(ENOENT, "flow log: cannot read the segment of that hour (" + path + ": " +
                                 why +
                                 "): it was not recording, retention deleted it, or the path is "
                                 "not a regular file (symlinks and FIFOs are refused)");
  flowlog::WhoHeld who(egress, port, at_ms, dst);
  char buf[flowlog::kMaxLine + 2];
  size_t lines = 0;
  while (std::fgets(buf, sizeof buf, f)) {
    std::string_view line(buf);
    const bool whole = line.ends_with('\n');
    if (whole) line.remove_suffix(1);
    if (!whole && !std::feof(f)) {
      // Longer than any record: skip the rest of it.
      int c;
      while ((c = std::fgetc(f)) != EOF && c != '\n') {
      }
      who.malformed++;
      continue;
    }
    ++lines;
    auto r = flowlog::parse(line);
    if (!r) {
      who.malformed++;  // a torn last line after a crash, or damage: counted, skipped
      continue;
    }
    who.add(*r);
  }
  std::fclose(f);
  nlohmann::json holders = nlohmann::json::array();
  for (const auto& h : who.holders())
    holders.push_back(
        {{"podIP", h.flow.pod.str()},
         {"namespace", h.flow.ns},
         {"protocol", h.flow.proto == 6 ? "tcp" : "udp"},
         {"podPort", h.flow.sport},
         {"destination", h.flow.dst.str()},
         {"destinationPort", h.flow.dport},
         {"since", h.start_known ? nlohmann::json(h.flow.ms) : nlohmann::json(nullptr)},
         {"listedAt", h.start_known ? nlohmann::json(nullptr) : nlohmann::json(h.flow.ms)}});
  nlohmann::json gaps = nlohmann::json::array();
  for (auto g : who.gaps()) gaps.push_back(g);
  nlohmann::json out{{"address", egress.str()},
                     {"port", port},
                     {"atMs", at_ms},
                     {"segment", path},
                     {"holders", holders},
                     {"gapsBefore", gaps},
                     {"malformedLines", who.malformed},
                     {"complete", who.complete() && who.malformed == 0}};
  return dumpJson(out, 2);
}

}  // namespace nsegress::gateway
