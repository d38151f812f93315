#include "nsegress/controller/lease_service.h"

#include <spdlog/spdlog.h>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/file.h"
#include "nsegress/common/json.h"
#include "nsegress/common/peer_wire.h"

namespace nsegress::controller {

namespace asio = boost::asio;
using udp = asio::ip::udp;

Result<std::set<std::string>> readDrained(const std::string& path) {
  std::set<std::string> out;
  auto text = readFileBounded(path, 1u << 20);
  if (!text) {
    if (text.error().code == ENOENT) return out;
    return text.error();
  }
  auto doc = parseJson(text->text, JsonLimits{1u << 20, 2, 100'000});
  if (!doc || !doc->is_array())
    return makeError(EINVAL, path + ": not a list of drained nodes; fix or remove it");
  for (const auto& n : *doc) {
    if (!n.is_string() || !isDnsSubdomain(n.get<std::string>()))
      return makeError(EINVAL, path + ": an entry is not a node name; fix or remove it");
    out.insert(n.get<std::string>());
  }
  return out;
}

Status writeDrained(const std::string& path, const std::set<std::string>& nodes) {
  nlohmann::json doc = nodes;
  return writeFileAtomically(path, dumpJson(doc, 2) + "\n");
}

Result<std::map<IpAddress, LeaseView>> LeaseFile::load() {
  std::map<IpAddress, LeaseView> out;
  auto text = readFileBounded(path_, 16u << 20);
  if (!text) {
    if (text.error().code == ENOENT) return out;
    return makeError(text.error().code, text.error().message);
  }
  auto doc = parseJson(text->text, JsonLimits{16u << 20, 4, 1'000'000});
  if (!doc || !doc->is_object())
    return makeError(EINVAL, path_ +
                                 ": not a lease file; refusing to start "
                                 "(move it away only if no gateway runs)");
  for (auto& [k, v] : doc->items()) {
    auto ip = IpAddress::parse(k);
    if (!ip || !v.is_object() || !v.contains("owner") || !v["owner"].is_string() ||
        !v.contains("epoch") || !v["epoch"].is_number_unsigned())
      return makeError(EINVAL, path_ + ": bad entry " + k.substr(0, 64));
    out[*ip] = LeaseView{v["owner"].get<std::string>(), v["epoch"].get<uint64_t>()};
  }
  return out;
}

Status LeaseFile::save(const std::map<IpAddress, LeaseView>& all, const std::set<IpAddress>&) {
  nlohmann::json doc = nlohmann::json::object();
  for (const auto& [ip, r] : all)
    if (r.epoch > 1) doc[ip.str()] = {{"owner", r.owner}, {"epoch", r.epoch}};
  return writeFileAtomically(path_, dumpJson(doc, 2) + "\n");
}

LeaseService::LeaseService(Options o, std::unique_ptr<LeaseRecords> records,
                           std::function<void()> changed)
    : o_(std::move(o)), records_(std::move(records)), changed_(std::move(changed)) {}

Result<std::unique_ptr<LeaseService>> LeaseService::open(Options o,
                                                         std::unique_ptr<LeaseRecords> records,
                                                         std::function<void()> changed) {
  std::unique_ptr<LeaseService> s(
      new LeaseService(std::move(o), std::move(records), std::move(changed)));
  s->book_ = std::make_unique<ownership::LeaseBook>(s->o_.timing, std::chrono::steady_clock::now());
  // Owners and epochs of past takeovers.
  auto past = s->records_->load();
  if (!past) return past.error();
  for (const auto& [ip, v] : *past) s->book_->restore(ip, v.owner, v.epoch);
  auto listen = parseIpv4Port(s->o_.listen);
  if (!listen) return makeError(EINVAL, "--lease-listen " + s->o_.listen + ": expected IPv4:port");
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address_v4(listen->ip.str());
  const uint16_t port = listen->port;
  s->sock_.open(udp::v4(), ec);
  if (!ec) s->sock_.bind(udp::endpoint(addr, static_cast<uint16_t>(port)), ec);
  if (ec) return makeError(ec.value(), "lease server " + s->o_.listen + ": " + ec.message());
  s->receive();
  s->thread_ = std::thread([p = s.get()] { p->io_.run(); });
  return s;
}

LeaseService::~LeaseService() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void LeaseService::receive() {
  sock_.async_receive_from(
      asio::buffer(rx_), from_, [this](const boost::system::error_code& ec, size_t n) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) {
          auto m = ownership::decode(std::string_view(rx_.data(), n), o_.key);
          auto* req = m ? std::get_if<ownership::LeaseRequest>(&*m) : nullptr;
          if (!req) {
            refused_++;
          } else if (stale_ || (o_.may_serve && !o_.may_serve())) {
            // Not (or no longer) the store: silence. The gateways keep
            // their addresses on their standbys' promises meanwhile.
          } else {
            ownership::LeaseReply reply;
            std::vector<std::pair<udp::endpoint, ownership::LeaseReply>> pushes;
            bool moved = false;
            {
              std::lock_guard l(mu_);
              nodes_[req->node] = from_;
              reply = book_->handle(*req, std::chrono::steady_clock::now());
              auto changes = book_->takeChanges();
              moved = !changes.empty();
              for (const auto& [ip, rec] : changes) unsaved_.insert(ip);
              for (const auto& [ip, rec] : changes)
                spdlog::warn("failover: {} {} {} (epoch {})", ip.str(),
                             rec.handed ? "handed over to" : "taken over by", rec.owner, rec.epoch);
              for (auto& p : book_->takePushes())
                if (auto it = nodes_.find(p.node); it != nodes_.end())
                  pushes.emplace_back(it->second, std::move(p));
              if (!unsaved_.empty()) {
                // Durable before anyone hears of it; if it cannot be written,
                // nothing is granted to anyone until it is (the book is
                // ahead of its records, and a restart would read those).
                if (auto p = persist(); !p) {
                  if (p.error().code == ESTALE) stale_ = true;
                  spdlog::error("failover: lease records ({}): {}{}", records_->describe(),
                                p.error().message,
                                stale_ ? "; this lease book stops granting" : "");
                }
              }
              dirty_ = !unsaved_.empty();
              if (dirty_) {
                reply.leases.clear();
                pushes.clear();
              }
            }
            takeovers_ += moved;
            auto bytes = std::make_shared<std::string>(ownership::encode(reply, o_.key));
            sock_.async_send_to(asio::buffer(*bytes), from_,
                                [bytes](const boost::system::error_code&, size_t) {});
            for (auto& [to, p] : pushes) {
              auto b = std::make_shared<std::string>(ownership::encode(p, o_.key));
              sock_.async_send_to(asio::buffer(*b), to,
                                  [b](const boost::system::error_code&, size_t) {});
            }
            if (moved && changed_) changed_();
          }
        }
        receive();
      });
}

Status LeaseService::persist() {
  std::map<IpAddress, LeaseView> all;
  for (const auto& [ip, r] : book_->records()) all[ip] = LeaseView{r.owner, r.epoch};
  auto s = records_->save(all, unsaved_);
  if (s) unsaved_.clear();
  return s;
}

uint16_t LeaseService::port() const {
  boost::system::error_code ec;
  auto ep = sock_.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

std::map<IpAddress, LeaseView> LeaseService::leases() const {
  std::lock_guard l(mu_);
  std::map<IpAddress, LeaseView> out;
  for (const auto& [ip, r] : book_->records()) out[ip] = LeaseView{r.owner, r.epoch};
  return out;
}

void LeaseService::handover(const std::map<IpAddress, std::string>& wanted) {
  std::lock_guard l(mu_);
  for (const auto& [ip, r] : book_->records()) {
    auto it = wanted.find(ip);
    const std::string to = it == wanted.end() ? "" : it->second;
    if (r.handover != to && to != r.owner) {
      if (!to.empty())
        spdlog::info("failover: asking {} to hand {} over to {}", r.owner, ip.str(), to);
      book_->handover(ip, to);
    }
  }
}

void LeaseService::designate(const std::map<IpAddress, AddressRole>& roles) {
  std::lock_guard l(mu_);
  for (const auto& [ip, r] : roles) book_->designate(ip, r.owner, r.standby);
}

}  // namespace nsegress::controller
