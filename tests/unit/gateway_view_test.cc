// GatewayViews: one node's desired state from the ledger, namespaces and
// pods — the rules both modes share — fed here from API objects decoded by
// common/decode.h, as a gateway's informers do in cluster mode. Pure logic;
// the real API server path is in tests/kube, the standalone path in
// controller_test.
#include "nsegress/common/gateway_view.h"
#include "nsegress/common/failover_roles.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "nsegress/common/decode.h"

namespace nsegress {
namespace {

using nlohmann::json;
using Cache = std::map<std::string, json>;

// As the gateway's informers and KubeStateSource do it: decode each object
// (an object that does not decode is skipped, with a warning), then the view.
GatewayView gatewayView(const std::string& node, const Cache& nss, const Cache& pods,
                        const Cache& eips) {
  GatewayViews views;
  std::vector<std::string> skipped;
  for (const auto& [k, o] : nss) {
    if (auto n = decodeNamespace(o))
      views.addNamespace(*n);
    else
      skipped.push_back("namespace " + k + ": " + n.error().message);
  }
  for (const auto& [k, o] : eips) {
    if (auto r = decodeEgressIP(o))
      views.addRecord(*r);
    else
      skipped.push_back("egressip " + k + ": " + r.error().message);
  }
  for (const auto& [k, o] : pods) {
    if (auto p = decodePod(o))
      views.addPod(*p);
    else
      skipped.push_back("pod " + k + ": " + p.error().message);
  }
  auto v = views.forNode(node);
  v.warnings.insert(v.warnings.end(), skipped.begin(), skipped.end());
  return v;
}

IpAddress ip(const char* s) {
  return *IpAddress::parse(s);
}

json ns(const std::string& name, json annotations, bool deleting = false) {
  json o{{"apiVersion", "v1"},
         {"kind", "Namespace"},
         {"metadata", {{"name", name}, {"annotations", annotations}, {"uid", "x"}}},
         {"spec", {{"finalizers", {"kubernetes"}}}}};
  if (deleting) o["metadata"]["deletionTimestamp"] = "2026-11-25T10:00:00Z";
  return o;
}
json pod(const std::string& ns, const std::string& name, std::vector<std::string> ips,
         const std::string& phase = "Running", bool host_network = false) {
  json list = json::array();
  for (const auto& i : ips) list.push_back({{"ip", i}});
  json o{
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{"app", "x"}}}}},
      {"spec", {{"nodeName", "n1"}, {"hostNetwork", host_network}, {"containers", json::array()}}},
      {"status", {{"phase", phase}, {"podIPs", list}, {"hostIP", "192.0.2.1"}}}};
  return o;
}
json eip(const std::string& address, const std::string& state, const std::string& ns,
         const std::string& node) {
  return json({{"apiVersion", "nsegress.io/v1alpha1"},
               {"kind", "EgressIP"},
               {"metadata", {{"name", address}}},
               {"spec", {{"ip", address}, {"pool", "dmz"}}},
               {"status",
                {{"state", state},
                 {"namespace", ns},
                 {"node", node},
                 {"assignedAt", "2026-11-25T10:00:00Z"}}}});
}

const NamespaceEgress* find(const GatewayView& v, const std::string& name) {
  for (const auto& n : v.state.namespaces)
    if (n.name == name) return &n;
  return nullptr;
}

TEST(GatewayView, TheLedgerDecidesWhichAddressEachNamespaceLeavesWith) {
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}})},
            {"shop", ns("shop", {{"nsegress.io/ip", "203.0.113.11"}})},
            {"wait", ns("wait", {{"nsegress.io/pool", "dmz"}})},
            {"plain", ns("plain", json::object())}};
  Cache pods{{"pay/a", pod("pay", "a", {"10.1.0.1", "fd00::1"})},
             {"pay/b", pod("pay", "b", {"10.1.0.2"})},
             {"shop/c", pod("shop", "c", {"10.1.0.3"})},
             {"wait/d", pod("wait", "d", {"10.1.0.4"})},
             {"plain/e", pod("plain", "e", {"10.1.0.5"})}};
  Cache eips{{"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")},
             {"203.0.113.11", eip("203.0.113.11", "Assigned", "shop", "gw-b")},
             {"203.0.113.12", eip("203.0.113.12", "Quarantined", "old", "")}};
  auto v = gatewayView("gw-a", nss, pods, eips);
  EXPECT_TRUE(v.warnings.empty());
  ASSERT_EQ(v.state.namespaces.size(), 3u) << "pay, shop, wait; not plain, not the tombstone";
  EXPECT_EQ(v.state.gateway, "gw-a");
  auto* pay = find(v, "pay");
  ASSERT_TRUE(pay);
  EXPECT_EQ(pay->egress_v4, ip("203.0.113.10"));
  EXPECT_FALSE(pay->egress_v6) << "IPv6 pods of pay are fail-closed";
  EXPECT_EQ(pay->pod_ips, (std::vector<IpAddress>{ip("10.1.0.1"), ip("fd00::1"), ip("10.1.0.2")}));
  auto* shop = find(v, "shop");
  ASSERT_TRUE(shop);
  EXPECT_FALSE(shop->egress_v4) << "hosted on gw-b: fail-closed here";
  EXPECT_FALSE(find(v, "wait")->egress_v4) << "no address in the ledger yet: fail-closed";

  auto b = gatewayView("gw-b", nss, pods, eips);
  EXPECT_EQ(find(b, "shop")->egress_v4, ip("203.0.113.11"));
  EXPECT_FALSE(find(b, "pay")->egress_v4);
}

TEST(GatewayView, AnAnnotationAloneNeverMapsAnything) {
  // The requested IP is only used once the ledger assigns it.
  Cache nss{{"shop", ns("shop", {{"nsegress.io/ip", "203.0.113.11"}})}};
  auto v = gatewayView("gw-a", nss, {}, {});
  ASSERT_EQ(v.state.namespaces.size(), 1u);
  EXPECT_FALSE(v.state.namespaces[0].egress_v4);
}

TEST(GatewayView, DeletingNamespaceStaysPinnedUntilTheLedgerReleasesIt) {
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}}, /*deleting=*/true)}};
  Cache pods{{"pay/a", pod("pay", "a", {"10.1.0.1"})}};
  Cache eips{{"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")}};
  EXPECT_EQ(gatewayView("gw-a", nss, pods, eips).state.namespaces.at(0).egress_v4,
            ip("203.0.113.10"));
  eips["203.0.113.10"] = eip("203.0.113.10", "Quarantined", "pay", "");
  auto v = gatewayView("gw-a", nss, pods, eips);
  ASSERT_EQ(v.state.namespaces.size(), 1u) << "draining pods are dropped, not let out unmapped";
  EXPECT_FALSE(v.state.namespaces[0].egress_v4);
  EXPECT_EQ(v.state.namespaces[0].pod_ips, std::vector<IpAddress>{ip("10.1.0.1")});
}

TEST(GatewayView, LedgerAssignmentWithoutAnnotationStillMapsUntilReleased) {
  // The annotation was removed; until the controller records the release the
  // ledger still names the address, and the gateway follows the ledger.
  Cache nss{{"pay", ns("pay", json::object())}};
  Cache pods{{"pay/a", pod("pay", "a", {"10.1.0.1"})}};
  Cache eips{{"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")}};
  auto v = gatewayView("gw-a", nss, pods, eips);
  ASSERT_EQ(v.state.namespaces.size(), 1u);
  EXPECT_EQ(v.state.namespaces[0].egress_v4, ip("203.0.113.10"));
}

TEST(GatewayView, PodAddressesThatAreNotThePodsOwnAreSkipped) {
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}})},
            {"shop", ns("shop", {{"nsegress.io/pool", "dmz"}})}};
  Cache pods{{"pay/done", pod("pay", "done", {"10.1.0.5"}, "Succeeded")},
             {"pay/failed", pod("pay", "failed", {"10.1.0.6"}, "Failed")},
             {"pay/host", pod("pay", "host", {"192.0.2.1"}, "Running", true)},
             {"pay/web", pod("pay", "web", {"10.1.0.7"})},
             {"pay/web2", pod("pay", "web2", {"10.1.0.7"})},
             {"pay/race", pod("pay", "race", {"10.1.0.9"}, "Pending")},
             {"shop/new", pod("shop", "new", {"10.1.0.5"})},
             {"shop/race", pod("shop", "race", {"10.1.0.9"})}};
  auto v = gatewayView("gw-a", nss, pods, {});
  EXPECT_EQ(find(v, "pay")->pod_ips, std::vector<IpAddress>{ip("10.1.0.7")})
      << "finished, host-network and doubly claimed addresses are not pay's";
  EXPECT_EQ(find(v, "shop")->pod_ips, std::vector<IpAddress>{ip("10.1.0.5")});
  ASSERT_EQ(v.warnings.size(), 1u);
  EXPECT_NE(v.warnings[0].find("10.1.0.9"), std::string::npos) << v.warnings[0];
}

TEST(GatewayView, MalformedObjectsAreSkippedWithAWarningAndHarmNothingElse) {
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}})},
            {"odd", json{{"metadata", "not an object"}}},
            {"empty", json::object()}};
  Cache pods{{"pay/a", pod("pay", "a", {"10.1.0.1"})},
             {"pay/bad", pod("pay", "bad", {"10.1.0.2", "banana"})},
             {"pay/b", json{{"metadata", {{"name", "b"}, {"namespace", "pay"}}},
                            {"status", {{"podIPs", "10.9.9.9"}}}}},
             {"pay/c", json{{"metadata", {{"name", "c"}, {"namespace", "pay"}}},
                            {"status", {{"podIP", 42}}}}},
             {"x", json::array()}};
  Cache eips{
      {"bad-ip", eip("banana", "Assigned", "pay", "gw-a")},
      {"bad-ns", eip("203.0.113.20", "Assigned", "Not_A_Namespace", "gw-a")},
      {"no-status", json{{"metadata", {{"name", "x"}}}, {"spec", {{"ip", "203.0.113.21"}}}}},
      {"typed", json{{"spec", {{"ip", 7}}}, {"status", {{"state", "Assigned"}, {"node", 3}}}}},
      {"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")}};
  auto v = gatewayView("gw-a", nss, pods, eips);
  ASSERT_EQ(v.state.namespaces.size(), 1u);
  EXPECT_EQ(v.state.namespaces[0].egress_v4, ip("203.0.113.10"));
  EXPECT_EQ(v.state.namespaces[0].pod_ips, std::vector<IpAddress>{ip("10.1.0.1")})
      << "pod b reports no address; a pod with a malformed address is refused whole";
  std::string all;
  for (const auto& w : v.warnings) all += w + "\n";
  EXPECT_EQ(v.warnings.size(), 8u) << "two bad namespaces; the banana pod, pod c (a numeric "
                                      "podIP), the array; two bad EgressIPs, the typed one:\n"
                                   << all;
  EXPECT_NE(all.find("pod pay/bad: status.podIPs[1]: \"banana\" is not an IP address"),
            std::string::npos)
      << all;
}

TEST(GatewayView, TwoAddressesOfOneFamilyForOneNamespaceUseTheLowerAndWarn) {
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}})}};
  Cache eips{{"203.0.113.12", eip("203.0.113.12", "Assigned", "pay", "gw-a")},
             {"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")},
             {"fd00::10", eip("fd00::10", "Assigned", "pay", "gw-a")}};
  auto v = gatewayView("gw-a", nss, {}, eips);
  EXPECT_EQ(v.state.namespaces.at(0).egress_v4, ip("203.0.113.10"));
  EXPECT_EQ(v.state.namespaces.at(0).egress_v6, ip("fd00::10"));
  EXPECT_EQ(v.warnings.size(), 1u);
}

TEST(GatewayView, AnAddressClaimedByTwoNamespacesIsBlockedNotLetOut) {
  // A Pod object of "shop" claims the address of pay's running pod: the
  // address is translated for neither, and dropped (it used to leave with the
  // node's address, unmapped: one tenant's object removed another's
  // protection).
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}})},
            {"shop", ns("shop", {{"nsegress.io/pool", "dmz"}})}};
  Cache pods{{"pay/web", pod("pay", "web", {"10.1.0.7", "10.1.0.8"})},
             {"shop/forged", pod("shop", "forged", {"10.1.0.7"})}};
  Cache eips{{"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")}};
  auto v = gatewayView("gw-a", nss, pods, eips);
  EXPECT_EQ(v.state.blocked, std::vector<IpAddress>{ip("10.1.0.7")});
  EXPECT_EQ(find(v, "pay")->pod_ips, std::vector<IpAddress>{ip("10.1.0.8")});
  EXPECT_TRUE(find(v, "shop")->pod_ips.empty());
}

TEST(GatewayView, PodsOfADeletedNamespaceStayFailClosedWhileTheyDrain) {
  // Standalone: the Namespace manifest is gone, its Pod manifests not yet;
  // the ledger still remembers the namespace (its address in quarantine).
  Cache pods{{"pay/web", pod("pay", "web", {"10.1.0.7"})},
             {"other/web", pod("other", "web", {"10.1.0.9"})}};
  Cache eips{{"203.0.113.10", eip("203.0.113.10", "Quarantined", "pay", "")}};
  auto v = gatewayView("gw-a", {}, pods, eips);
  ASSERT_EQ(v.state.namespaces.size(), 1u) << "pay, not other (never held an address)";
  EXPECT_EQ(v.state.namespaces[0].name, "pay");
  EXPECT_FALSE(v.state.namespaces[0].egress_v4) << "fail-closed";
  EXPECT_EQ(v.state.namespaces[0].pod_ips, std::vector<IpAddress>{ip("10.1.0.7")});
  // A namespace that exists and gave its annotation up is released for good:
  // its pods go back to the node's normal egress.
  Cache nss{{"pay", ns("pay", json::object())}};
  EXPECT_TRUE(gatewayView("gw-a", nss, pods, eips).state.namespaces.empty());
}

TEST(GatewayView, ResultIsAValidDesiredState) {
  Cache nss{{"pay", ns("pay", {{"nsegress.io/pool", "dmz"}})}};
  Cache pods{{"pay/a", pod("pay", "a", {"10.1.0.1"})}};
  Cache eips{{"203.0.113.10", eip("203.0.113.10", "Assigned", "pay", "gw-a")}};
  auto v = gatewayView("gw-a", nss, pods, eips);
  auto round = parseDesiredState(serializeDesiredState(v.state));
  ASSERT_TRUE(round) << round.error().message;
  EXPECT_EQ(*round, v.state);
}

}  // namespace
}  // namespace nsegress

// ---- failover roles (common/failover_roles.h) ----

namespace nsegress {
namespace {

TEST(FailoverRoles, OwnerAndEpochAreOnePairFromTheStoreWhereItHasARecord) {
  World w;
  w.pools["dmz"].name = "dmz";
  for (const char* n : {"gw1", "gw2", "gw3"}) w.nodes[n].name = n;
  w.nodes["gw3"].ready = false;
  std::map<IpAddress, AddressRecord> ledger;
  const auto ip = *IpAddress::parse("203.0.113.10");
  ledger[ip] = AddressRecord{ip, "dmz", AddressState::kAssigned, "pay", "gw2", 1, 0, 0};
  // Never moved: the ledger's node, epoch 1, a ready other node as standby.
  auto r = failoverRoles(w, ledger);
  EXPECT_EQ(r[ip].owner, "gw2");
  EXPECT_EQ(r[ip].epoch, 1u);
  EXPECT_EQ(r[ip].standby, "gw1") << "gw3 is not ready";
  // Moved by the store (a hand-over to gw1 at epoch 3) before the ledger
  // follows: the store's owner with the store's epoch — (gw2, 3) would make
  // gw1's Member ignore its own grant (found by the cluster-mode drain test).
  w.leases[ip] = LeaseView{"gw1", 3};
  r = failoverRoles(w, ledger);
  EXPECT_EQ(r[ip].owner, "gw1");
  EXPECT_EQ(r[ip].epoch, 3u);
  EXPECT_EQ(r[ip].standby, "gw2");
  // Drained nodes are nobody's standby.
  w.nodes["gw2"].labels["nsegress.io/drain"] = "true";
  EXPECT_EQ(failoverRoles(w, ledger)[ip].standby, "");
  EXPECT_EQ(plannedHandovers(w, ledger).count(ip), 0u) << "the owner gw1 is not drained";
}

}  // namespace
}  // namespace nsegress
