// The controller's lease server (failover, docs/architecture.md): the
// ownership protocol's store. A LeaseBook behind a UDP socket on a thread of
// its own (a reconcile never delays a renewal), authenticated by the shared
// peer key. A change of owner is made durable (LeaseRecords: a file in
// standalone mode, per-address Leases in the API server in cluster mode)
// before anyone hears of it, and read back at start; after a start nothing
// is taken over for the book's quiet period.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/objects.h"
#include "nsegress/common/ownership.h"
#include "nsegress/common/result.h"

namespace nsegress::controller {

// Nodes drained by an operator (`<state-dir>/drained.json`: a JSON list of
// node names). Missing: none. Anything else that is not exactly that is an
// error naming the file (the caller refuses to start).
Result<std::set<std::string>> readDrained(const std::string& path);
Status writeDrained(const std::string& path, const std::set<std::string>& nodes);

// Where the book's owners and epochs outlive the process. Only addresses
// that changed owner at least once (epoch > 1) are kept.
class LeaseRecords {
 public:
  virtual ~LeaseRecords() = default;
  virtual Result<std::map<IpAddress, LeaseView>> load() = 0;
  // `all`: the whole book; `changed`: addresses whose record moved since the
  // last successful save. An error with code ESTALE: another writer changed
  // a record (in a cluster, another leader's book): this book must stop.
  virtual Status save(const std::map<IpAddress, LeaseView>& all,
                      const std::set<IpAddress>& changed) = 0;
  virtual std::string describe() const = 0;
};

// Standalone: one JSON file, replaced atomically.
class LeaseFile final : public LeaseRecords {
 public:
  explicit LeaseFile(std::string path) : path_(std::move(path)) {}
  Result<std::map<IpAddress, LeaseView>> load() override;
  Status save(const std::map<IpAddress, LeaseView>& all, const std::set<IpAddress>&) override;
  std::string describe() const override { return path_; }

 private:
  std::string path_;
};

class LeaseService {
 public:
  struct Options {
    std::string listen;  // IPv4:port
    std::string key;
    ownership::Timing timing;
    // Asked before each request is answered (cluster mode: "still the
    // leader"); false: the request is dropped unanswered.
    std::function<bool()> may_serve;
  };
  // `changed` runs (on the service's thread) after a takeover.
  static Result<std::unique_ptr<LeaseService>> open(Options o,
                                                    std::unique_ptr<LeaseRecords> records,
                                                    std::function<void()> changed);
  ~LeaseService();
  // Another writer changed the records under this book: it grants nothing
  // more; the caller replaces it (a fresh book reads the records again).
  bool stale() const { return stale_; }
  uint16_t port() const;

  std::map<IpAddress, LeaseView> leases() const;
  void designate(const std::map<IpAddress, AddressRole>& roles);
  // Planned moves wanted now (address → target node); a handover no longer
  // wanted and not yet released is cancelled.
  void handover(const std::map<IpAddress, std::string>& wanted);
  uint64_t refused() const { return refused_; }
  uint64_t takeovers() const { return takeovers_; }

 private:
  LeaseService(Options o, std::unique_ptr<LeaseRecords> records, std::function<void()> changed);
  void receive();
  Status persist();

  Options o_;
  std::unique_ptr<LeaseRecords> records_;
  std::set<IpAddress> unsaved_;  // changed, not yet durable
  std::function<void()> changed_;
  mutable std::mutex mu_;
  std::unique_ptr<ownership::LeaseBook> book_;
  boost::asio::io_context io_;
  boost::asio::ip::udp::socket sock_{io_};
  std::array<char, 65536> rx_{};
  boost::asio::ip::udp::endpoint from_;
  std::thread thread_;
  std::map<std::string, boost::asio::ip::udp::endpoint> nodes_;  // last seen, by node name
  bool dirty_ = false;  // the book is ahead of the lease file: grant nothing until written
  std::atomic<uint64_t> refused_{0}, takeovers_{0};
  std::atomic<bool> stale_{false};
};

}  // namespace nsegress::controller
