// Egress addresses on the uplink (libnl-route) and their announcement
// (gratuitous ARP for IPv4; IPv6 relies on the kernel's unsolicited NA).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nsegress/common/clock.h"
#include "nsegress/common/fd.h"
#include "nsegress/gateway/ports/address.h"
#include "nsegress/gateway/ports/link.h"

namespace nsegress::netlink {

class UplinkAddresses final : public gateway::AddressKernel, public gateway::LinkState {
 public:
  // Resolves `ifname` in the calling thread's network namespace.
  static Result<std::unique_ptr<UplinkAddresses>> open(const std::string& ifname);
  ~UplinkAddresses() override;
  Result<std::set<IpAddress>> list() override;
  Status add(const IpAddress& a) override;
  Status remove(const IpAddress& a) override;
  int ifindex() const { return ifindex_; }
  // Up with carrier (IFF_UP and IFF_RUNNING); false also when it vanished.
  bool up() override;

 private:
  struct Impl;
  UplinkAddresses(std::string ifname, int ifindex, std::unique_ptr<Impl> impl);
  std::string ifname_;
  int ifindex_;
  std::unique_ptr<Impl> impl_;
  Fd flags_sock_;  // for up()
};

// A raw ARP frame announcing `ip` at `mac` (RFC 5227 announcement: an ARP
// request with sender and target address both `ip`). Pure, for tests.
std::vector<uint8_t> buildGratuitousArp(const uint8_t mac[6], const IpAddress& ip);

// When each gratuitous ARP is due: `count` per announced address, the first
// at once, then every `interval`. Announcing an address again restarts its
// series (no duplicate series). Pure: times are passed in.
class GarpSchedule {
 public:
  GarpSchedule(int count, std::chrono::milliseconds interval)
      : count_(count), interval_(interval) {}
  void add(const IpAddress& a, Clock::TimePoint now);
  // The addresses due at `now` (one ARP each), advancing their series.
  std::vector<IpAddress> due(Clock::TimePoint now);
  std::optional<Clock::TimePoint> next() const;
  bool empty() const { return series_.empty(); }

 private:
  struct Series {
    Clock::TimePoint at;
    int remaining;
  };
  int count_;
  std::chrono::milliseconds interval_;
  std::map<IpAddress, Series> series_;
};

// Sends the scheduled gratuitous ARPs from a worker thread, so neighbours'
// caches move without waiting for their entries to expire. The socket is
// opened in the constructor's namespace; time comes from `clock`.
class GarpAnnouncer final : public gateway::Announcer {
 public:
  static Result<std::unique_ptr<GarpAnnouncer>> open(const std::string& ifname, int count,
                                                     std::chrono::milliseconds interval,
                                                     Clock& clock = SystemClock::instance());
  ~GarpAnnouncer() override;
  void announce(const IpAddress& a) override;
  uint64_t sent() const;
  uint64_t failed() const;

 private:
  GarpAnnouncer(Fd fd, int ifindex, const uint8_t mac[6], int count,
                std::chrono::milliseconds interval, Clock& clock);
  void run();
  bool sendOne(const IpAddress& a);

  Fd fd_;
  int ifindex_;
  uint8_t mac_[6];
  Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  GarpSchedule schedule_;
  bool stop_ = false;
  uint64_t sent_ = 0;
  uint64_t failed_ = 0;
  std::thread worker_;
};

}  // namespace nsegress::netlink
