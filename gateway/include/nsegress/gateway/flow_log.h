// The flow log (attribution for pools without port blocks): conntrack's
// NEW and DESTROY events of this node's egress addresses, written as
// records (common/flow_log.h) to hourly segment files, kept for a bounded
// time and size. Events are read on a thread of their own from a socket with
// a large receive buffer; a kernel overrun (ENOBUFS) is counted, marked in
// the log (L) and followed by a resync (R + E records of the flows that
// exist), never hidden. Each segment begins with a resync, so a question
// about time T reads one segment.
#pragma once

#include <atomic>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/flow_log.h"
#include "nsegress/gateway/ports/ct_sync.h"

namespace prometheus {
class Collectable;
}

namespace nsegress::gateway {

struct FlowLogOptions {
  std::string dir;
  std::string node = "node";
  int64_t retention_s = 7 * 86400;  // segments older than this are deleted
  uint64_t max_bytes = 1ull << 30;  // and the oldest while the total is larger
};

struct FlowLogStats {
  std::atomic<uint64_t> new_flows{0}, ended_flows{0}, listed_flows{0}, losses{0}, write_errors{0},
      segments_deleted{0}, bytes{0};
};

// The files: appends records, one segment per hour, retention. Not
// thread-safe (the flow log's thread owns it).
class FlowLogWriter {
 public:
  FlowLogWriter(FlowLogOptions o, FlowLogStats& stats);
  ~FlowLogWriter();
  Status open();
  // Appends `r` to the segment of its hour. Returns true when this record
  // opened a new segment (the caller resyncs into it).
  bool write(const flowlog::Record& r);
  void flush();
  // Deletes whole segments: older than the retention, then the oldest while
  // over max_bytes (never the one being written).
  void enforceRetention(int64_t now_ms);

 private:
  FlowLogOptions o_;
  FlowLogStats& stats_;
  std::FILE* f_ = nullptr;
  std::string current_;
  bool failing_ = false;
};

class FlowLog {
 public:
  FlowLog(FlowLogOptions o, ConntrackSyncKernel& kernel, std::function<int64_t()> now_ms);
  ~FlowLog();
  Status start();  // begin() and the thread calling pump()
  void stop();
  // Opens the directory and writes the start and a resync (no thread).
  Status begin();
  // The state the data path has: which egress addresses this node hosts,
  // and the namespace of each (any thread).
  void setState(const DesiredState& d);
  const FlowLogStats& stats() const { return stats_; }
  // One pass of the loop's work (the thread calls it; tests too).
  void pump();

 private:
  void resync(int64_t ms);
  void record(flowlog::Record::Kind k, const ctsync::Flow& f, int64_t ms);
  FlowLogOptions o_;
  ConntrackSyncKernel& kernel_;
  std::function<int64_t()> now_;
  FlowLogStats stats_;
  FlowLogWriter writer_;
  std::mutex mu_;
  std::map<IpAddress, std::string> egress_ns_;
  bool egress_grew_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  int64_t last_flush_ = 0;
};

// nsegress_gateway_flow_log_* from `stats` (which must outlive it).
std::shared_ptr<prometheus::Collectable> flowLogMetrics(const FlowLogStats& stats);

// "Who held EGRESS:PORT at T?" from a flow log directory: reads the segment
// of T's hour (each begins with a resync). The answer as JSON.
Result<std::string> whoFromFlowLog(
    const std::string& dir, const IpAddress& egress, uint16_t port, int64_t at_ms,
    std::optional<std::pair<IpAddress, uint16_t>> dst = std::nullopt);

}  // namespace nsegress::gateway
