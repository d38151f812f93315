#include "nsegress/common/peer_wire.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cerrno>

#include "nsegress/common/desired_state.h"
#include "nsegress/common/file.h"
#include "nsegress/common/json.h"

namespace nsegress::ownership {

namespace {

using nlohmann::json;
constexpr std::string_view kMagic = "NSE1";
constexpr size_t kMac = 32;

}  // namespace

std::string hmacSha256(std::string_view key, std::string_view body) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

namespace {

json ips(const std::vector<IpAddress>& v) {
  json a = json::array();
  for (const auto& ip : v) a.push_back(ip.str());
  return a;
}

Error bad(const std::string& what) {
  return makeError(EINVAL, "peer message: " + what);
}

Result<std::string> node(const json& j, const char* key, bool may_be_empty = false) {
  if (!j.contains(key) || !j[key].is_string()) return bad(std::string(key) + ": missing");
  auto s = j[key].get<std::string>();
  if (s.empty() && may_be_empty) return s;
  if (!isDnsSubdomain(s)) return bad(std::string(key) + ": not a node name");
  return s;
}
Result<uint64_t> number(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_unsigned())
    return bad(std::string(key) + ": not a non-negative integer");
  return j[key].get<uint64_t>();
}
Result<IpAddress> address(const json& j) {
  if (!j.is_string()) return bad("an address is not a string");
  auto ip = IpAddress::parse(j.get<std::string>());
  if (!ip) return bad("not an IP address");
  return *ip;
}
Result<std::vector<IpAddress>> addresses(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_array()) return bad(std::string(key) + ": not a list");
  if (j[key].size() > kMaxAddressesPerMessage) return bad(std::string(key) + ": too many");
  std::vector<IpAddress> out;
  for (const auto& e : j[key]) {
    auto ip = address(e);
    if (!ip) return ip.error();
    out.push_back(*ip);
  }
  return out;
}

}  // namespace

std::string encode(const Message& m, std::string_view key) {
  json j;
  if (auto* hb = std::get_if<Heartbeat>(&m)) {
    j = {{"t", "hb"}, {"from", hb->from}, {"seq", hb->seq}, {"owned", ips(hb->owned)}};
  } else if (auto* a = std::get_if<HeartbeatAck>(&m)) {
    j = {{"t", "ack"}, {"from", a->from}, {"echo", a->echo}, {"promised", ips(a->promised)}};
  } else if (auto* an = std::get_if<Announce>(&m)) {
    j = {{"t", "ann"}, {"from", an->from}, {"ip", an->ip.str()}, {"epoch", an->epoch}};
  } else if (auto* r = std::get_if<LeaseRequest>(&m)) {
    json renew = json::array();
    for (const auto& w : r->renew) renew.push_back({{"ip", w.ip.str()}, {"standby", w.standby}});
    j = {{"t", "req"},
         {"node", r->node},
         {"seq", r->seq},
         {"renew", renew},
         {"takeover", ips(r->takeover)}};
    if (!r->released.empty()) j["released"] = ips(r->released);
  } else if (auto* p = std::get_if<LeaseReply>(&m)) {
    json leases = json::array();
    for (const auto& l : p->leases) {
      json s = {{"ip", l.ip.str()},
                {"owner", l.owner},
                {"epoch", l.epoch},
                {"standby", l.standby},
                {"granted", l.granted}};
      if (!l.handover.empty()) s["handover"] = l.handover;
      leases.push_back(std::move(s));
    }
    j = {{"t", "rep"}, {"node", p->node}, {"echo", p->echo}, {"leases", leases}};
  }
  const std::string body = dumpJson(j, -1);
  return std::string(kMagic) + hmacSha256(key, body) + body;
}

Result<Message> decode(std::string_view d, std::string_view key) {
  if (d.size() > kMaxDatagram) return bad("too long");
  if (d.size() < kMagic.size() + kMac || d.substr(0, kMagic.size()) != kMagic)
    return bad("not an nsegress peer message");
  const auto got = d.substr(kMagic.size(), kMac);
  const auto body = d.substr(kMagic.size() + kMac);
  const auto want = hmacSha256(key, body);
  if (CRYPTO_memcmp(got.data(), want.data(), kMac) != 0) return bad("authentication failed");
  auto parsed = parseJson(body, JsonLimits{kMaxDatagram, 4, 20'000});
  if (!parsed) return bad("not JSON: " + parsed.error().message);
  const json& j = *parsed;
  if (!j.is_object() || !j.contains("t") || !j["t"].is_string()) return bad("no type");
  const auto t = j["t"].get<std::string>();
  if (t == "hb" || t == "ack") {
    auto from = node(j, "from");
    auto seq = number(j, t == "hb" ? "seq" : "echo");
    auto list = addresses(j, t == "hb" ? "owned" : "promised");
    for (const Error* e : {from ? nullptr : &from.error(), seq ? nullptr : &seq.error(),
                           list ? nullptr : &list.error()})
      if (e) return *e;
    if (t == "hb") return Message(Heartbeat{*from, *seq, *list});
    return Message(HeartbeatAck{*from, *seq, *list});
  }
  if (t == "ann") {
    auto from = node(j, "from");
    auto epoch = number(j, "epoch");
    if (!from) return from.error();
    if (!epoch) return epoch.error();
    if (!j.contains("ip")) return bad("ip: missing");
    auto ip = address(j["ip"]);
    if (!ip) return ip.error();
    return Message(Announce{*from, *ip, *epoch});
  }
  if (t == "req") {
    auto n = node(j, "node");
    auto seq = number(j, "seq");
    auto take = addresses(j, "takeover");
    for (const Error* e :
         {n ? nullptr : &n.error(), seq ? nullptr : &seq.error(), take ? nullptr : &take.error()})
      if (e) return *e;
    LeaseRequest r{*n, *seq, {}, *take, {}};
    if (j.contains("released")) {
      auto rel = addresses(j, "released");
      if (!rel) return rel.error();
      if (rel->empty()) return bad("released: empty (omitted when empty)");
      r.released = std::move(*rel);
    }
    if (!j.contains("renew") || !j["renew"].is_array() ||
        j["renew"].size() > kMaxAddressesPerMessage)
      return bad("renew: not a list");
    for (const auto& w : j["renew"]) {
      if (!w.is_object() || !w.contains("ip")) return bad("renew: not an object with an ip");
      auto ip = address(w["ip"]);
      auto standby = node(w, "standby", true);
      if (!ip) return ip.error();
      if (!standby) return standby.error();
      r.renew.push_back({*ip, *standby});
    }
    return Message(std::move(r));
  }
  if (t == "rep") {
    auto n = node(j, "node");
    auto echo = number(j, "echo");
    if (!n) return n.error();
    if (!echo) return echo.error();
    LeaseReply r{*n, *echo, {}};
    if (!j.contains("leases") || !j["leases"].is_array() ||
        j["leases"].size() > kMaxAddressesPerMessage)
      return bad("leases: not a list");
    for (const auto& l : j["leases"]) {
      if (!l.is_object() || !l.contains("ip")) return bad("leases: not an object with an ip");
      auto ip = address(l["ip"]);
      auto owner = node(l, "owner", true);
      auto standby = node(l, "standby", true);
      auto epoch = number(l, "epoch");
      for (const Error* e :
           {ip ? nullptr : &ip.error(), owner ? nullptr : &owner.error(),
            standby ? nullptr : &standby.error(), epoch ? nullptr : &epoch.error()})
        if (e) return *e;
      if (!l.contains("granted") || !l["granted"].is_boolean()) return bad("granted: missing");
      std::string handover;
      if (l.contains("handover")) {
        auto h = node(l, "handover");
        if (!h) return h.error();
        handover = *h;
      }
      r.leases.push_back({*ip, *owner, *epoch, *standby, l["granted"].get<bool>(), handover});
    }
    return Message(std::move(r));
  }
  return bad("unknown type");
}

Result<std::string> readKeyFile(const std::string& path) {
  auto text = readFileBounded(path, 4096);
  if (!text) return text.error();
  std::string k = text->text;
  while (!k.empty() && (k.back() == '\n' || k.back() == '\r' || k.back() == ' ')) k.pop_back();
  if (k.size() < kMinKeyBytes)
    return makeError(
        EINVAL, path + ": a peer key needs at least " + std::to_string(kMinKeyBytes) + " bytes");
  return k;
}

}  // namespace nsegress::ownership
