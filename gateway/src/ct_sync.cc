#include "nsegress/gateway/ct_sync.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "nsegress/gateway/metrics.h"

namespace nsegress::gateway {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using ctsync::Change;
using ctsync::Datagram;
using ctsync::Flow;
using ctsync::Kind;

namespace {
constexpr auto kRequestInterval = std::chrono::milliseconds(200);
}

CtSyncCore::CtSyncCore(std::string self, uint64_t stream, size_t max_cache, size_t max_pending)
    : self_(std::move(self)), stream_(stream), max_cache_(max_cache), max_pending_(max_pending) {}

// ---------------------------------------------------------------- sender

std::map<std::string, std::set<IpAddress>> CtSyncCore::setOwned(
    std::map<IpAddress, std::string> owned) {
  std::map<std::string, std::set<IpAddress>> gained;
  for (const auto& [ip, standby] : owned) {
    if (standby.empty() || standby == self_) continue;
    auto it = owned_.find(ip);
    if (it == owned_.end() || it->second != standby) gained[standby].insert(ip);
  }
  owned_ = std::move(owned);
  // A node no longer standby for anything gets nothing more.
  std::set<std::string> standbys;
  for (const auto& [ip, s] : owned_) standbys.insert(s);
  for (auto it = pending_.begin(); it != pending_.end();)
    it = standbys.count(it->first) ? std::next(it) : pending_.erase(it);
  return gained;
}

void CtSyncCore::onKernelChanges(const std::vector<Change>& changes) {
  for (const auto& c : changes) {
    auto it = owned_.find(c.flow.egress);
    if (it == owned_.end() || it->second.empty() || it->second == self_) continue;
    auto& q = pending_[it->second];
    if (q.size() >= max_pending_) {
      stats_.pending_dropped++;  // the next flush is followed by a resync (overrun)
      continue;
    }
    q.push_back(c);
  }
}

std::map<std::string, std::set<IpAddress>> CtSyncCore::overrun() {
  std::map<std::string, std::set<IpAddress>> all;
  for (const auto& [ip, standby] : owned_)
    if (!standby.empty() && standby != self_) all[standby].insert(ip);
  return all;
}

Datagram CtSyncCore::header(Kind kind, const std::string& peer) {
  Datagram d;
  d.kind = kind;
  d.from = self_;
  d.stream = stream_;
  d.generation = generation_;
  d.seq = kind == Kind::kKeepalive || kind == Kind::kResyncRequest ? seq_[peer] : ++seq_[peer];
  return d;
}

void CtSyncCore::chunk(Out& out, const std::string& peer, Kind kind,
                       const std::vector<Change>& changes) {
  for (size_t i = 0; i < changes.size(); i += ctsync::kMaxChanges) {
    Datagram d = header(kind, peer);
    const size_t n = std::min(ctsync::kMaxChanges, changes.size() - i);
    d.changes.assign(changes.begin() + static_cast<std::ptrdiff_t>(i),
                     changes.begin() + static_cast<std::ptrdiff_t>(i + n));
    stats_.changes_sent += n;
    out.emplace_back(peer, std::move(d));
  }
}

CtSyncCore::Out CtSyncCore::flush() {
  Out out;
  for (auto& [peer, q] : pending_) {
    if (q.empty()) continue;
    chunk(out, peer, Kind::kEvents, q);
    q.clear();
  }
  return out;
}

CtSyncCore::Out CtSyncCore::resync(const std::string& peer, const std::set<IpAddress>& addresses,
                                   const std::vector<Flow>& dump) {
  Out out;
  // What was queued before the dump goes first (the order is the kernel's).
  if (auto it = pending_.find(peer); it != pending_.end() && !it->second.empty()) {
    chunk(out, peer, Kind::kEvents, it->second);
    it->second.clear();
  }
  ++generation_;
  std::vector<Change> changes;
  for (const auto& f : dump)
    if (addresses.count(f.egress)) changes.push_back({ctsync::Op::kUpsert, f});
  chunk(out, peer, Kind::kResync, changes);
  std::vector<IpAddress> list(addresses.begin(), addresses.end());
  for (size_t i = 0; i < list.size() || i == 0; i += ctsync::kMaxAddresses) {
    Datagram d = header(Kind::kResyncDone, peer);
    const size_t n = std::min(ctsync::kMaxAddresses, list.size() - i);
    d.addresses.assign(list.begin() + static_cast<std::ptrdiff_t>(i),
                       list.begin() + static_cast<std::ptrdiff_t>(i + n));
    out.emplace_back(peer, std::move(d));
    if (list.empty()) break;
  }
  stats_.resyncs_sent++;
  return out;
}

CtSyncCore::Out CtSyncCore::keepalives() const {
  Out out;
  std::set<std::string> standbys;
  for (const auto& [ip, s] : owned_)
    if (!s.empty() && s != self_) standbys.insert(s);
  for (const auto& peer : standbys) {
    Datagram d;
    d.kind = Kind::kKeepalive;
    d.from = self_;
    d.stream = stream_;
    d.generation = generation_;
    auto it = seq_.find(peer);
    d.seq = it == seq_.end() ? 0 : it->second;
    out.emplace_back(peer, std::move(d));
  }
  return out;
}

// -------------------------------------------------------------- receiver

void CtSyncCore::setStandbyFor(std::set<IpAddress> addresses) {
  standby_for_ = std::move(addresses);
  for (auto it = cache_.begin(); it != cache_.end();)
    it = standby_for_.count(it->second.flow.egress) ? std::next(it) : cache_.erase(it);
}

CtSyncCore::Received CtSyncCore::onDatagram(const Datagram& d, Time now) {
  Received r;
  if (d.from == self_) return r;
  if (d.kind == Kind::kResyncRequest) {
    std::set<IpAddress> want;
    for (const auto& [ip, standby] : owned_)
      if (standby == d.from &&
          (d.addresses.empty() ||
           std::find(d.addresses.begin(), d.addresses.end(), ip) != d.addresses.end()))
        want.insert(ip);
    if (!want.empty()) r.resync = {d.from, std::move(want)};
    return r;
  }
  Sender& s = senders_[d.from];
  bool need = false;
  if (s.stream != d.stream) {
    // A new incarnation (or the first word from it): what we hold from
    // its predecessor may be stale, and we may have missed its start.
    s.stream = d.stream;
    s.last = d.seq;
    need = true;
  } else if (d.kind == Kind::kKeepalive) {
    if (d.seq > s.last) {
      stats_.datagrams_lost += d.seq - s.last;
      s.last = d.seq;
      need = true;
    }
  } else {
    if (d.seq <= s.last) {
      stats_.stale++;
      return r;
    }
    if (d.seq > s.last + 1) {
      stats_.datagrams_lost += d.seq - s.last - 1;
      need = true;
    }
    s.last = d.seq;
  }
  for (const auto& c : d.changes) {
    stats_.changes_received++;
    const Key k = c.flow.key();
    if (c.op == ctsync::Op::kDelete) {
      if (auto it = cache_.find(k); it != cache_.end() && it->second.from == d.from)
        cache_.erase(it);
      continue;
    }
    if (!standby_for_.count(c.flow.egress)) continue;
    auto it = cache_.find(k);
    if (it == cache_.end() && cache_.size() >= max_cache_) {
      stats_.cache_full++;
      continue;
    }
    cache_[k] = Entry{c.flow, d.from, d.generation};
  }
  if (d.kind == Kind::kResyncDone) {
    const std::set<IpAddress> covered(d.addresses.begin(), d.addresses.end());
    for (auto it = cache_.begin(); it != cache_.end();)
      it = it->second.from == d.from && it->second.generation < d.generation &&
                   covered.count(it->second.flow.egress)
               ? cache_.erase(it)
               : std::next(it);
  }
  if (need && (!s.last_request || now - *s.last_request >= kRequestInterval)) {
    s.last_request = now;
    stats_.resync_requests++;
    Datagram q;
    q.kind = Kind::kResyncRequest;
    q.from = self_;
    q.stream = stream_;
    r.reply = std::move(q);
  }
  return r;
}

std::vector<Flow> CtSyncCore::take(const std::set<IpAddress>& egress) {
  std::vector<Flow> out;
  for (auto it = cache_.begin(); it != cache_.end();) {
    if (egress.count(it->second.flow.egress)) {
      out.push_back(it->second.flow);
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

// ---------------------------------------------------------------- driver

namespace {
uint64_t incarnation() {
  return static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
         (static_cast<uint64_t>(::getpid()) << 48);
}
}  // namespace

CtSync::CtSync(CtSyncConfig cfg, ConntrackSyncKernel& kernel, GatewayMetrics* metrics)
    : cfg_(std::move(cfg)),
      kernel_(kernel),
      metrics_(metrics),
      sock_(io_),
      events_(io_),
      flush_timer_(io_),
      keepalive_timer_(io_),
      core_(cfg_.node, incarnation(), cfg_.max_cache) {}

CtSync::~CtSync() {
  stop();
}

Status CtSync::start() {
  boost::system::error_code ec;
  sock_.open(udp::v4(), ec);
  if (!ec) sock_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) sock_.set_option(asio::socket_base::receive_buffer_size(8 << 20), ec);
  if (!ec) sock_.bind(udp::endpoint(udp::v4(), cfg_.port), ec);
  if (ec)
    return makeError(ec.value(),
                     "conntrack sync: UDP port " + std::to_string(cfg_.port) + ": " + ec.message());
  events_.assign(kernel_.eventFd(), ec);
  if (ec) return makeError(ec.value(), "conntrack sync: event socket: " + ec.message());
  receive();
  waitEvents();
  armFlush();
  armKeepalive();
  thread_ = std::thread([this] { io_.run(); });
  return okStatus();
}

void CtSync::stop() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
  if (events_.is_open()) events_.release();  // the kernel port owns the fd
}

void CtSync::send(const CtSyncCore::Out& out) {
  for (const auto& [peer, d] : out) {
    udp::endpoint to;
    {
      std::lock_guard lk(mu_);
      auto it = peers_.find(peer);
      if (it == peers_.end()) continue;
      to = it->second;
    }
    // Synchronous: a resync of many datagrams must not outrun the socket
    // buffer (UDP send blocks only briefly on a full queue).
    boost::system::error_code ec;
    sock_.send_to(asio::buffer(ctsync::encode(d, cfg_.key)), to, 0, ec);
    if (ec) spdlog::debug("conntrack sync: send to {}: {}", peer, ec.message());
  }
}

void CtSync::resync(const std::map<std::string, std::set<IpAddress>>& what) {
  for (const auto& [peer, addrs] : what) {
    auto flows = kernel_.dump(addrs);
    if (!flows) {
      spdlog::error("conntrack sync: dump for {}: {}", peer, flows.error().message);
      continue;  // the receiver's next gap or keepalive asks again
    }
    CtSyncCore::Out out;
    {
      std::lock_guard lk(mu_);
      out = core_.resync(peer, addrs, *flows);
    }
    send(out);
  }
  publish();
}

void CtSync::receive() {
  sock_.async_receive_from(
      asio::buffer(rx_), rx_from_, [this](const boost::system::error_code& ec, size_t n) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
          auto d = ctsync::decode(std::string_view(rx_.data(), n), cfg_.key);
          CtSyncCore::Received r;
          {
            std::lock_guard lk(mu_);
            if (!d) {
              core_.stats().refused++;
              spdlog::debug("conntrack sync: datagram from {} refused: {}",
                            rx_from_.address().to_string(), d.error().message);
            } else {
              r = core_.onDatagram(*d, std::chrono::steady_clock::now());
            }
          }
          if (r.reply) {
            boost::system::error_code e2;
            sock_.send_to(asio::buffer(ctsync::encode(*r.reply, cfg_.key)), rx_from_, 0, e2);
          }
          if (r.resync) resync({*r.resync});
        }
        receive();
      });
}

void CtSync::waitEvents() {
  events_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (ec) return;
                       auto changes = kernel_.readEvents();
                       if (!changes) {
                         if (changes.error().code == ENOBUFS) {
                           std::map<std::string, std::set<IpAddress>> all;
                           {
                             std::lock_guard lk(mu_);
                             core_.stats().kernel_overruns++;
                             all = core_.overrun();
                           }
                           spdlog::warn("conntrack sync: the kernel dropped events; resyncing");
                           resync(all);
                         } else {
                           spdlog::error("conntrack sync: events: {}", changes.error().message);
                         }
                       } else if (!changes->empty()) {
                         std::lock_guard lk(mu_);
                         core_.onKernelChanges(*changes);
                         if (!oldest_) oldest_ = std::chrono::steady_clock::now();
                       }
                       waitEvents();
                     });
}

void CtSync::armFlush() {
  flush_timer_.expires_after(cfg_.flush);
  flush_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    CtSyncCore::Out out;
    bool overrun = false;
    std::map<std::string, std::set<IpAddress>> all;
    {
      std::lock_guard lk(mu_);
      out = core_.flush();
      overrun = core_.stats().pending_dropped != published_.pending_dropped;
      if (overrun) all = core_.overrun();
    }
    send(out);
    if (!out.empty() && oldest_ && metrics_)
      metrics_->ct_sync_lag.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - *oldest_).count());
    oldest_.reset();
    if (overrun) resync(all);
    publish();
    armFlush();
  });
}

void CtSync::armKeepalive() {
  keepalive_timer_.expires_after(cfg_.keepalive);
  keepalive_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    CtSyncCore::Out out;
    {
      std::lock_guard lk(mu_);
      out = core_.keepalives();
    }
    send(out);
    armKeepalive();
  });
}

void CtSync::setRoles(std::map<IpAddress, std::string> owned, std::set<IpAddress> standby_for,
                      std::map<std::string, udp::endpoint> peers) {
  asio::post(io_, [this, owned = std::move(owned), standby_for = std::move(standby_for),
                   peers = std::move(peers)]() mutable {
    std::map<std::string, std::set<IpAddress>> gained;
    {
      std::lock_guard lk(mu_);
      peers_ = std::move(peers);
      core_.setStandbyFor(std::move(standby_for));
      gained = core_.setOwned(std::move(owned));
    }
    resync(gained);
  });
}

CommitCount CtSync::commit(const std::set<IpAddress>& egress) {
  std::vector<Flow> flows;
  {
    std::lock_guard lk(mu_);
    flows = core_.take(egress);
  }
  CommitCount c;
  if (!flows.empty()) {
    auto r = kernel_.commit(flows);
    if (!r) {
      spdlog::error("conntrack sync: commit: {}", r.error().message);
      c.failed = flows.size();
    } else {
      c = *r;
    }
  }
  {
    std::lock_guard lk(mu_);
    core_.stats().committed += c.created;
    core_.stats().commit_replaced += c.replaced;
    core_.stats().commit_failed += c.failed;
  }
  return c;
}

CtSyncStats CtSync::stats() const {
  std::lock_guard lk(mu_);
  return core_.stats();
}

size_t CtSync::cacheSize() const {
  std::lock_guard lk(mu_);
  return core_.cacheSize();
}

void CtSync::publish() {
  CtSyncStats now;
  size_t cached = 0;
  {
    std::lock_guard lk(mu_);
    now = core_.stats();
    cached = core_.cacheSize();
  }
  if (metrics_) metrics_->publishCtSync(published_, now, cached);
  published_ = now;
}

}  // namespace nsegress::gateway
