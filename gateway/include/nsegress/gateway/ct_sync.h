// Conntrack state sync (issue 12, property 5): the owner of an egress
// address streams that address's source-NATed flows to the address's
// standby, which keeps them in a bounded cache and commits them to its
// kernel at a takeover, before the fence lets the address live — so
// established flows keep their translated address and port, and a reply
// from the outside finds its entry instead of a reset.
//
// CtSyncCore is the pure protocol (no sockets, no kernel): per receiver a
// stream of consecutive sequence numbers, so any loss shows as a gap, is
// counted and is followed by a resync (a full dump tagged with a
// generation, closed by a "done" that drops what the dump did not
// confirm); keepalives reveal the loss of a last datagram; a new sender
// incarnation asks for a resync. CtSync drives it on its own thread
// (UDP, the kernel's event socket, timers). docs/architecture.md,
// "Conntrack sync".
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nsegress/common/ct_sync_wire.h"
#include "nsegress/gateway/ports/ct_sync.h"

namespace nsegress::gateway {

struct CtSyncStats {
  uint64_t changes_sent = 0;
  uint64_t changes_received = 0;
  uint64_t datagrams_lost = 0;   // gaps in a sender's sequence (receiver side)
  uint64_t kernel_overruns = 0;  // the kernel dropped events (sender side)
  uint64_t pending_dropped = 0;  // changes dropped before sending (queue full)
  uint64_t resyncs_sent = 0;
  uint64_t resync_requests = 0;  // asked for by this node
  uint64_t refused = 0;          // datagrams unauthenticated or malformed
  uint64_t stale = 0;            // replayed or reordered datagrams ignored
  uint64_t cache_full = 0;       // changes not kept: the cache was full
  uint64_t committed = 0;
  uint64_t commit_replaced = 0;
  uint64_t commit_failed = 0;
};

class CtSyncCore {
 public:
  using Time = std::chrono::steady_clock::time_point;
  using Out = std::vector<std::pair<std::string, ctsync::Datagram>>;  // node → datagram

  CtSyncCore(std::string self, uint64_t stream, size_t max_cache = 262144,
             size_t max_pending = 262144);

  // --- sender (the owner) ---
  // The addresses this node owns, each with its standby ("" none). Returns,
  // per standby, the addresses it must be sent in full (new to it).
  std::map<std::string, std::set<IpAddress>> setOwned(std::map<IpAddress, std::string> owned);
  // Kernel changes; those of owned addresses with a standby are queued.
  void onKernelChanges(const std::vector<ctsync::Change>& changes);
  // The kernel lost events: every standby gets everything again.
  std::map<std::string, std::set<IpAddress>> overrun();
  Out flush();  // queued changes as datagrams
  // A full dump of `addresses` (the caller's kernel dump) for `peer`.
  Out resync(const std::string& peer, const std::set<IpAddress>& addresses,
             const std::vector<ctsync::Flow>& dump);
  Out keepalives() const;

  // --- receiver (the standby) ---
  // The addresses this node is standby for (other cached flows are dropped).
  void setStandbyFor(std::set<IpAddress> addresses);
  struct Received {
    std::optional<ctsync::Datagram> reply;  // a resync request back to the sender
    // A receiver asked us for a resync: its name and the addresses.
    std::optional<std::pair<std::string, std::set<IpAddress>>> resync;
  };
  Received onDatagram(const ctsync::Datagram& d, Time now);
  // Removes and returns the cached flows of `egress` (to commit them).
  std::vector<ctsync::Flow> take(const std::set<IpAddress>& egress);
  size_t cacheSize() const { return cache_.size(); }

  CtSyncStats& stats() { return stats_; }
  const CtSyncStats& stats() const { return stats_; }

 private:
  ctsync::Datagram header(ctsync::Kind kind, const std::string& peer);
  void chunk(Out& out, const std::string& peer, ctsync::Kind kind,
             const std::vector<ctsync::Change>& changes);

  std::string self_;
  uint64_t stream_;
  size_t max_cache_, max_pending_;
  uint64_t generation_ = 0;
  std::map<IpAddress, std::string> owned_;
  std::map<std::string, uint64_t> seq_;  // per receiver: last sent
  std::map<std::string, std::vector<ctsync::Change>> pending_;

  struct Sender {
    uint64_t stream = 0;
    uint64_t last = 0;
    std::optional<Time> last_request;
  };
  struct Entry {
    ctsync::Flow flow;
    std::string from;
    uint64_t generation = 0;
  };
  using Key = std::tuple<uint8_t, IpAddress, uint16_t, IpAddress, uint16_t>;
  std::map<std::string, Sender> senders_;
  std::map<Key, Entry> cache_;
  std::set<IpAddress> standby_for_;
  CtSyncStats stats_;
};

struct CtSyncConfig {
  std::string node;
  std::string key;
  uint16_t port = 4796;
  std::chrono::milliseconds flush{5};
  std::chrono::milliseconds keepalive{250};
  size_t max_cache = 262144;
};

class GatewayMetrics;

// The driver: its own thread and io_context, so a burst of events never
// delays the ownership protocol's ticks.
class CtSync {
 public:
  CtSync(CtSyncConfig cfg, ConntrackSyncKernel& kernel, GatewayMetrics* metrics = nullptr);
  ~CtSync();
  Status start();
  void stop();
  // Thread-safe; from the agent's thread.
  void setRoles(std::map<IpAddress, std::string> owned, std::set<IpAddress> standby_for,
                std::map<std::string, boost::asio::ip::udp::endpoint> peers);
  // Commits the cached flows of `egress` to the kernel, synchronously (a
  // takeover calls it before the fence opens). Returns how many.
  CommitCount commit(const std::set<IpAddress>& egress);
  CtSyncStats stats() const;
  size_t cacheSize() const;

 private:
  void receive();
  void waitEvents();
  void armFlush();
  void armKeepalive();
  void send(const CtSyncCore::Out& out);
  void resync(const std::map<std::string, std::set<IpAddress>>& what);
  void publish();

  CtSyncConfig cfg_;
  ConntrackSyncKernel& kernel_;
  GatewayMetrics* metrics_;
  boost::asio::io_context io_;
  boost::asio::ip::udp::socket sock_;
  boost::asio::posix::stream_descriptor events_;
  boost::asio::steady_timer flush_timer_, keepalive_timer_;
  std::array<char, ctsync::kMaxDatagram + 1> rx_{};
  boost::asio::ip::udp::endpoint rx_from_;
  std::thread thread_;
  mutable std::mutex mu_;  // core_, peers_
  CtSyncCore core_;
  std::map<std::string, boost::asio::ip::udp::endpoint> peers_;
  CtSyncStats published_;
  std::optional<std::chrono::steady_clock::time_point> oldest_;  // of the changes not yet sent
};

}  // namespace nsegress::gateway
