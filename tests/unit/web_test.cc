// The firewall team's page: content against the ledger, escaping of
// everything a user can influence, the who-was-behind search, a standby.
#include <gtest/gtest.h>

#include "nsegress/controller/api.h"
#include "nsegress/controller/manifests.h"
#include "nsegress/controller/web.h"

namespace nsegress::controller {
namespace {

constexpr Seconds kT0 = 1'800'000'000;

TEST(WebPage, EscapesEverythingAndRepairsBadUtf8) {
  EXPECT_EQ(htmlEscape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;");
  EXPECT_EQ(htmlEscape("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(htmlEscape("a\xFF"
                       "b\xC3"),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
  EXPECT_EQ(htmlEscape("a\x01"
                       "b"),
            "a\xEF\xBF\xBD"
            "b");
}

struct Fixture {
  MemoryStore store;
  std::shared_ptr<View> view = std::make_shared<View>();
  ApiContext ctx;
  Fixture() {
    auto w = parseManifests(R"(
apiVersion: nsegress.io/v1alpha1
kind: EgressPool
metadata: {name: payments}
spec: {addresses: ["203.0.113.10-203.0.113.12"], acknowledgeRemoval: true}
)",
                            "p.yaml");
    EXPECT_TRUE(w);
    view->pools = w->pools;
    view->at = kT0 + 100;
    view->reconciles = 1;
    AddressRecord live{*IpAddress::parse("203.0.113.10"),
                       "payments",
                       AddressState::kAssigned,
                       "shop",
                       "gw-a",
                       kT0,
                       0,
                       0};
    AddressRecord gone{*IpAddress::parse("203.0.113.11"),
                       "payments",
                       AddressState::kPendingFirewallCleanup,
                       "old",
                       "",
                       kT0 - 1000,
                       kT0,
                       0};
    AddressRecord onboarding{*IpAddress::parse("203.0.113.12"),
                             "payments",
                             AddressState::kAssigned,
                             "new",
                             "gw-a",
                             kT0 + 50,
                             0,
                             0};
    onboarding.usable_at = kT0 + 650;
    for (const auto& r : {live, gone, onboarding}) view->ledger[r.ip] = r;
    std::vector<AddressRecord> rs = {live, gone, onboarding};
    (void)store.commit(
        rs,
        {AuditEvent{kT0 - 1000, "Assigned", "old", "203.0.113.11", "payments", "gw-a", "assigned"},
         AuditEvent{kT0, "Released", "old", "203.0.113.11", "payments", "", "released"},
         AuditEvent{kT0 + 1, "Refused", "evil", "", "", "",
                    "annotation: \"<script>alert(1)</script>\" is bad"}});
    ctx = ApiContext::fixed(view, &store);
  }
  HttpResponse get(const std::string& target) {
    return apiRouter(ctx).dispatch(HttpRequest::make("GET", target));
  }
};

TEST(WebPage, ShowsTheAllowlistWhatWaitsAndRecentChanges) {
  Fixture f;
  auto r = f.get("/ui");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_NE(r.headers.get("Content-Security-Policy").value_or("").find("default-src 'none'"),
            std::string::npos);
  const std::string& b = r.body;
  EXPECT_EQ(b.find("<script"), std::string::npos) << "no script, and none injected";
  EXPECT_NE(b.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  // The allowlist holds the live addresses (the onboarding one too: it is
  // in the feeds), not the released one.
  const auto table = b.substr(b.find("data-pool=\"payments\""));
  const auto allowlist = table.substr(0, table.find("</table>"));
  EXPECT_NE(allowlist.find(">203.0.113.10<"), std::string::npos);
  EXPECT_NE(allowlist.find(">203.0.113.12<"), std::string::npos);
  EXPECT_NE(allowlist.find("onboarding"), std::string::npos);
  EXPECT_EQ(allowlist.find("203.0.113.11"), std::string::npos);
  const auto pending = b.substr(b.find("id=\"pending\""));
  EXPECT_NE(pending.substr(0, pending.find("</table>")).find("nsegressctl ack 203.0.113.11"),
            std::string::npos);
  EXPECT_NE(b.find("/feeds/edl/payments"), std::string::npos);
}

TEST(WebPage, AnswersWhoWasBehindAndRefusesBadInput) {
  Fixture f;
  auto r = f.get("/ui?ip=203.0.113.11&at=" + formatTime(kT0 - 10));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("namespace <b>old</b>"), std::string::npos);
  r = f.get("/ui?ip=203.0.113.11&at=" + std::to_string(kT0 + 10));
  EXPECT_NE(r.body.find(": nobody"), std::string::npos);
  r = f.get("/ui?ip=%3Cb%3E&at=now");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body.find("<b>"), std::string::npos) << "the bad input is echoed escaped only";
  EXPECT_NE(r.body.find("&lt;b&gt;"), std::string::npos);
  r = f.get("/ui?ip=203.0.113.11&at=99999999999999999999");
  EXPECT_EQ(r.status, 400);
}

TEST(WebPage, AStandbyShowsNoList) {
  Fixture f;
  f.ctx = ApiContext::fixed(f.view, &f.store, {}, "not serving: this replica is not the leader");
  auto r = f.get("/ui");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body.find("203.0.113"), std::string::npos);
}

}  // namespace
}  // namespace nsegress::controller
