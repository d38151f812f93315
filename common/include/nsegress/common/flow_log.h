// The flow log: attribution of ADDRESS:PORT to a pod for pools without port
// blocks, from conntrack's NEW and DESTROY events (docs/firewall-team-guide.md,
// "Which pod"). The pure part: the record format, and the question "which
// flows held ADDRESS:PORT at T" over records read in order.
//
// One record a line, tab-separated (greppable; parsed strictly):
//   N  ms proto egress nat_port pod sport dst dport namespace   a flow began
//   D  ms proto egress nat_port pod sport dst dport namespace   a flow ended
//   E  ms proto egress nat_port pod sport dst dport namespace   a flow that exists
//                                                              (listed by a resync)
//   R  ms                      a resync begins: flows not listed by the E
//                              records after it ended by then
//   L  ms                      the kernel dropped events (ENOBUFS) here
//   S  ms node                 the writer started (it recorded nothing before)
// ms: Unix time in milliseconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nsegress/common/ip.h"
#include "nsegress/common/result.h"

namespace nsegress::flowlog {

struct Record {
  enum class Kind : char {
    kNew = 'N',
    kDestroy = 'D',
    kExists = 'E',
    kResync = 'R',
    kLost = 'L',
    kStart = 'S'
  };
  Kind kind = Kind::kNew;
  int64_t ms = 0;
  // Flow records only:
  uint8_t proto = 6;  // 6 TCP, 17 UDP
  IpAddress egress;
  uint16_t nat_port = 0;
  IpAddress pod;
  uint16_t sport = 0;
  IpAddress dst;
  uint16_t dport = 0;
  std::string ns;
  std::string node;  // kStart only
  bool operator==(const Record&) const = default;
};

// The line for `r`, with its newline.
std::string format(const Record& r);
// One line (without its newline). Lines over kMaxLine, unknown kinds, bad
// numbers, addresses of mixed families, names that are not DNS labels: an
// error naming the field.
inline constexpr size_t kMaxLine = 512;
Result<Record> parse(std::string_view line);

// Segment files: flows-<unix hour>.log, one per hour, read in name order.
std::string segmentName(int64_t ms);
std::optional<int64_t> segmentHour(std::string_view file_name);

// A flow that held the address and port at the time asked.
struct Holder {
  Record flow;       // the N or E record (its ms: when first seen)
  bool start_known;  // N: its start was seen; E: it existed at a resync
};

// "Who held EGRESS:PORT at T?" Feed records in order; records after `at`
// are ignored. `dst`: only flows to that destination (optional).
class WhoHeld {
 public:
  WhoHeld(IpAddress egress, uint16_t port, int64_t at_ms,
          std::optional<std::pair<IpAddress, uint16_t>> dst = std::nullopt);
  void add(const Record& r);
  std::vector<Holder> holders() const;
  // Times before `at` when the log may have missed flows (losses, starts of
  // the writer): a flow that began and ended inside such a gap is unknown.
  const std::vector<int64_t>& gaps() const { return gaps_; }
  // Whether every flow open at `at` is in the log: a resync (R and its E
  // records) followed the last gap before `at` (each flow then open was
  // listed by it or began after it).
  bool complete() const { return resynced_ && !open_gap_; }
  size_t malformed = 0;  // counted by the reader

 private:
  struct Open {
    Record rec;
    bool start_known;
    bool listed;  // seen since the last resync began
  };
  bool matches(const Record& r) const;
  IpAddress egress_;
  uint16_t port_;
  int64_t at_;
  std::optional<std::pair<IpAddress, uint16_t>> dst_;
  std::vector<Open> open_;  // few: flows of one address and port
  bool in_resync_ = false;
  bool resynced_ = false;
  bool open_gap_ = false;
  std::vector<int64_t> gaps_;
};

}  // namespace nsegress::flowlog
