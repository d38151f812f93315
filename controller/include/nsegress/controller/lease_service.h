// The standalone controller's lease server (failover, docs/architecture.md):
// the ownership protocol's store. A LeaseBook behind a UDP socket on a
// thread of its own (a reconcile never delays a renewal), authenticated by
// the shared peer key. Takeovers are written to a file (atomically) before
// the grant is sent, and read back at start; after a restart nothing is
// taken over for the book's quiet period.
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

class LeaseService {
 public:
  struct Options {
    std::string listen;  // IPv4:port
    std::string key;
    std::string persist_path;
    ownership::Timing timing;
  };
  // `changed` runs (on the service's thread) after a takeover.
  static Result<std::unique_ptr<LeaseService>> open(Options o, std::function<void()> changed);
  ~LeaseService();

  std::map<IpAddress, LeaseView> leases() const;
  void designate(const std::map<IpAddress, AddressRole>& roles);
  // Planned moves wanted now (address → target node); a handover no longer
  // wanted and not yet released is cancelled.
  void handover(const std::map<IpAddress, std::string>& wanted);
  uint64_t refused() const { return refused_; }
  uint64_t takeovers() const { return takeovers_; }

 private:
  LeaseService(Options o, std::function<void()> changed);
  void receive();
  Status persist();

  Options o_;
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
};

}  // namespace nsegress::controller
