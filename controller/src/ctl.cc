// nsegressctl: the operator's view of the controller's API.
#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include "nsegress/common/encoding.h"
#include "nsegress/common/json.h"

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;
using nsegress::dumpJson;
using nsegress::parseJsonOrDiscarded;
using nsegress::percentEncode;

namespace {

// "Bearer <token>" when --token-file or $NSEGRESS_TOKEN gives one.
std::string g_authorization;

std::pair<int, std::string> call(const std::string& server, http::verb verb,
                                 const std::string& target) {
  auto colon = server.rfind(':');
  boost::asio::io_context io;
  tcp::resolver res(io);
  beast::tcp_stream stream(io);
  stream.expires_after(std::chrono::seconds(10));
  stream.connect(res.resolve(server.substr(0, colon), server.substr(colon + 1)));
  http::request<http::empty_body> req{verb, target, 11};
  req.set(http::field::host, server);
  if (!g_authorization.empty()) req.set(http::field::authorization, g_authorization);
  http::write(stream, req);
  beast::flat_buffer buf;
  http::response<http::string_body> resp;
  http::read(stream, buf, resp);
  return {resp.result_int(), resp.body()};
}

std::pair<int, std::string> get(const std::string& server, const std::string& target) {
  return call(server, http::verb::get, target);
}

std::string orDash(const json& j) {
  if (j.is_null()) return "-";
  std::string s = j.is_string() ? j.get<std::string>() : dumpJson(j);
  return s.empty() ? "-" : s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsegressctl: list, explain, who-had-this-IP, feeds"};
  std::string server = "127.0.0.1:8080";
  app.add_option("--server", server, "controller host:port (its plain-HTTP --listen)");
  std::string token_file;
  app.add_option("--token-file", token_file,
                 "file holding a bearer token of --auth-file (default: $NSEGRESS_TOKEN); needed "
                 "once the controller has credentials")
      ->check(CLI::ExistingFile);
  app.require_subcommand(1);
  auto* list = app.add_subcommand("list", "annotated namespaces and their egress IPs");
  std::string ns;
  auto* show = app.add_subcommand("show", "one namespace, in full");
  show->add_option("namespace", ns)->required();
  auto* expl = app.add_subcommand("explain", "why a namespace has (no) egress IP");
  expl->add_option("namespace", ns)->required();
  auto* addrs = app.add_subcommand("addresses", "the ledger: every address's state");
  std::string ip, at;
  auto* who = app.add_subcommand("who-had", "which namespace held an address at a time");
  who->add_option("ip", ip)->required();
  who->add_option("--at", at, "Unix time or RFC 3339 UTC (default: now)");
  std::string addr, who_at;
  auto* whop = app.add_subcommand(
      "who", "who was behind ADDRESS:PORT at a time: the pod (port blocks) or the namespace");
  whop->add_option("addr", addr, "203.0.113.10:41234 or [fd00::1]:41234")->required();
  whop->add_option("--at", who_at, "Unix time or RFC 3339 UTC (default: now)");
  auto* blocks = app.add_subcommand("port-blocks", "the port blocks held now, per pod");
  std::string pool;
  auto* feed = app.add_subcommand("feed", "a pool's firewall feed (EDL)");
  feed->add_option("pool", pool)->required();
  int64_t since = 0;
  auto* audit = app.add_subcommand("audit", "the append-only event log");
  audit->add_option("--since", since);
  auto* hold = app.add_subcommand(
      "hold", "what the controller holds and why (releases waiting for confirmation)");
  std::string address;
  auto* ack = app.add_subcommand(
      "ack", "the firewall side removed ADDRESS: its quarantine starts (decommission handshake)");
  ack->add_option("address", address)->required();
  auto* pend = app.add_subcommand(
      "pending", "addresses waiting on the firewall side: cleanup to acknowledge, onboarding");
  std::string token;
  auto* confirm = app.add_subcommand(
      "confirm-release", "confirm the held releases named by TOKEN (see `nsegressctl hold`)");
  confirm->add_option("token", token)->required();
  std::string node;
  auto* drain =
      app.add_subcommand("drain",
                         "hand every egress address of gateway NODE over to its standby (planned, "
                         "established flows carried) and place nothing new on it");
  drain->add_option("node", node)->required();
  auto* undrain = app.add_subcommand("undrain", "let gateway NODE host addresses again");
  undrain->add_option("node", node)->required();
  CLI11_PARSE(app, argc, argv);
  {
    std::string token;
    if (!token_file.empty()) {
      std::ifstream in(token_file);
      std::getline(in, token);  // the first line; a trailing newline is not part of it
    } else if (const char* t = std::getenv("NSEGRESS_TOKEN")) {
      token = t;
    }
    while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
    if (!token.empty()) g_authorization = "Bearer " + token;
  }

  try {
    std::pair<int, std::string> r;
    if (list->parsed())
      r = get(server, "/api/v1/namespaces");
    else if (show->parsed() || expl->parsed())
      r = get(server, "/api/v1/namespaces/" + percentEncode(ns));
    else if (addrs->parsed())
      r = get(server, "/api/v1/addresses");
    else if (who->parsed())
      r = get(server, "/api/v1/who-had?ip=" + percentEncode(ip) +
                          (at.empty() ? "" : "&at=" + percentEncode(at)));
    else if (whop->parsed())
      r = get(server, "/api/v1/who?addr=" + percentEncode(addr) +
                          (who_at.empty() ? "" : "&at=" + percentEncode(who_at)));
    else if (blocks->parsed())
      r = get(server, "/api/v1/port-blocks");
    else if (feed->parsed())
      r = get(server, "/feeds/edl/" + percentEncode(pool));
    else if (hold->parsed())
      r = get(server, "/api/v1/hold");
    else if (ack->parsed())
      r = call(server, http::verb::post, "/api/v1/ack?ip=" + percentEncode(address));
    else if (pend->parsed())
      r = get(server, "/api/v1/pending");
    else if (confirm->parsed())
      r = call(server, http::verb::post, "/api/v1/hold/confirm?token=" + percentEncode(token));
    else if (drain->parsed())
      r = call(server, http::verb::post, "/api/v1/drain?node=" + percentEncode(node));
    else if (undrain->parsed())
      r = call(server, http::verb::post, "/api/v1/drain?node=" + percentEncode(node) + "&undo=1");
    else
      r = get(server, "/audit?since=" + std::to_string(since));
    if (r.first != 200 && r.first != 202) {
      auto j = parseJsonOrDiscarded(r.second);
      std::cerr << "error " << r.first << ": "
                << (j.is_object() && j.contains("error") ? j["error"].get<std::string>() : r.second)
                << "\n";
      if (r.first == 401)
        std::cerr << "(the controller has credentials: give a bearer token with --token-file or "
                     "$NSEGRESS_TOKEN)\n";
      return 1;
    }
    if (feed->parsed() || audit->parsed()) {
      std::cout << r.second;
      return 0;
    }
    auto parsed = nsegress::parseJson(r.second);
    if (!parsed) {
      std::cerr << "nsegressctl: the controller's answer is not JSON: " << parsed.error().message
                << "\n";
      return 1;
    }
    const json& j = *parsed;
    if (list->parsed()) {
      std::cout << std::left << std::setw(20) << "NAMESPACE" << std::setw(10) << "PHASE"
                << std::setw(18) << "IP" << std::setw(10) << "POOL" << std::setw(12) << "GATEWAY"
                << "REASON\n";
      for (const auto& s : j)
        std::cout << std::setw(20) << orDash(s["namespace"]) << std::setw(10) << orDash(s["phase"])
                  << std::setw(18) << orDash(s["ip"]) << std::setw(10) << orDash(s["pool"])
                  << std::setw(12) << orDash(s["node"]) << (s["reason"].get<std::string>()) << "\n";
    } else if (expl->parsed()) {
      std::cout << j["explain"].get<std::string>() << "\n";
    } else if (addrs->parsed()) {
      std::cout << std::left << std::setw(18) << "IP" << std::setw(10) << "POOL" << std::setw(13)
                << "STATE" << std::setw(18) << "NAMESPACE" << std::setw(10) << "GATEWAY"
                << "QUARANTINE-UNTIL\n";
      for (const auto& a : j)
        std::cout << std::setw(18) << orDash(a["ip"]) << std::setw(10) << orDash(a["pool"])
                  << std::setw(13) << orDash(a["state"]) << std::setw(18) << orDash(a["namespace"])
                  << std::setw(10) << orDash(a["node"]) << orDash(a["quarantineUntil"]) << "\n";
    } else if (hold->parsed()) {
      if (j.is_null()) {
        std::cout << "nothing is held\n";
      } else {
        std::cout << "held since " << orDash(j["since"]) << ": " << orDash(j["reason"]) << "\n";
        for (const auto& n : j["namespaces"]) std::cout << "  would release: " << orDash(n) << "\n";
        if (!j["token"].get<std::string>().empty())
          std::cout << "confirm with: nsegressctl confirm-release " << orDash(j["token"]) << "\n";
      }
    } else if (ack->parsed()) {
      std::cout << orDash(j["ip"]) << ": removal acknowledged (by " << orDash(j["acknowledgedBy"])
                << "); its quarantine starts at the next reconcile\n";
    } else if (pend->parsed()) {
      std::cout << "WAITING FOR FIREWALL CLEANUP (acknowledge with nsegressctl ack ADDRESS)\n";
      for (const auto& a : j["firewallCleanup"])
        std::cout << "  " << std::left << std::setw(40) << orDash(a["ip"]) << " pool "
                  << orDash(a["pool"]) << ", released by " << orDash(a["namespace"]) << " at "
                  << orDash(a["releasedAt"]) << " (" << orDash(a["waitingSeconds"]) << " s ago)\n";
      if (j["firewallCleanup"].empty()) std::cout << "  none\n";
      std::cout << "ONBOARDING (in the feeds, not yet used)\n";
      for (const auto& a : j["onboarding"])
        std::cout << "  " << std::left << std::setw(40) << orDash(a["ip"]) << " pool "
                  << orDash(a["pool"]) << ", for " << orDash(a["namespace"]) << ", used from "
                  << orDash(a["usableAt"]) << "\n";
      if (j["onboarding"].empty()) std::cout << "  none\n";
    } else if (confirm->parsed()) {
      std::cout << "confirmed: the releases happen at the next reconcile\n";
    } else if (who->parsed()) {
      std::cout << j["ip"].get<std::string>() << " at " << j["at"].get<std::string>() << ": "
                << (j["namespace"].is_null() ? "nobody" : j["namespace"].get<std::string>())
                << "\n";
    } else {
      std::cout << dumpJson(j, 2) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "nsegressctl: " << e.what() << " (is the controller listening on " << server
              << "?)\n";
    return 1;
  }
  return 0;
}
