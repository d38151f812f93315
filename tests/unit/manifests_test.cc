// manifests/ renders with `kubectl kustomize` and keeps its security promises.
// (Acceptance by a real API server is checked by the `kube` tests.)
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <set>

namespace {

std::string render(const std::string& dir) {
  std::string out;
  FILE* p = popen(("kubectl kustomize " NSEGRESS_SOURCE_DIR "/" + dir + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) return "ERROR: " + out;
  return out;
}

class Manifests : public ::testing::Test {
 protected:
  void SetUp() override {
    if (system("command -v kubectl >/dev/null 2>&1") != 0) GTEST_SKIP() << "kubectl not installed";
    const std::string text = render("manifests");
    ASSERT_EQ(text.rfind("ERROR", 0), std::string::npos) << text;
    docs = YAML::LoadAll(text);
    main_kinds.clear();
    for (const auto& d : docs) main_kinds.insert(d["kind"].as<std::string>());
    // The CRDs are a kustomization of their own (kept on uninstall).
    const std::string crds = render("manifests/crds");
    ASSERT_EQ(crds.rfind("ERROR", 0), std::string::npos) << crds;
    for (const auto& d : YAML::LoadAll(crds)) docs.push_back(d);
  }
  std::set<std::string> main_kinds;
  YAML::Node find(const std::string& kind, const std::string& name) {
    for (const auto& d : docs)
      if (d["kind"].as<std::string>() == kind && d["metadata"]["name"].as<std::string>() == name)
        return d;
    ADD_FAILURE() << kind << " " << name << " not rendered";
    return YAML::Node();
  }
  std::vector<YAML::Node> docs;
};

TEST_F(Manifests, RenderEverything) {
  std::set<std::string> got;
  for (const auto& d : docs)
    got.insert(d["kind"].as<std::string>() + "/" + d["metadata"]["name"].as<std::string>());
  for (const char* want : {"CustomResourceDefinition/egresspools.nsegress.io",
                           "CustomResourceDefinition/egressips.nsegress.io",
                           "Deployment/nsegress-controller", "DaemonSet/nsegress-gateway",
                           "ClusterRole/nsegress-controller", "ClusterRole/nsegress-gateway",
                           "Role/nsegress-controller-local", "Service/nsegress-controller"})
    EXPECT_TRUE(got.count(want)) << want;
}

TEST_F(Manifests, ControllerIsUnprivilegedWithTwoReplicas) {
  auto d = find("Deployment", "nsegress-controller");
  EXPECT_EQ(d["spec"]["replicas"].as<int>(), 2);
  auto pod = d["spec"]["template"]["spec"];
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>());
  auto c = pod["containers"][0]["securityContext"];
  EXPECT_TRUE(c["readOnlyRootFilesystem"].as<bool>());
  EXPECT_FALSE(c["allowPrivilegeEscalation"].as<bool>());
  EXPECT_EQ(c["capabilities"]["drop"][0].as<std::string>(), "ALL");
  EXPECT_FALSE(c["capabilities"]["add"]);
}

TEST_F(Manifests, GatewayHasHostNetworkAndOnlyNetAdminNetRaw) {
  auto d = find("DaemonSet", "nsegress-gateway");
  auto pod = d["spec"]["template"]["spec"];
  EXPECT_TRUE(pod["hostNetwork"].as<bool>());
  // One agent on every node (steering): no node selector, every taint tolerated.
  EXPECT_FALSE(pod["nodeSelector"]);
  ASSERT_EQ(pod["tolerations"].size(), 1u);
  EXPECT_EQ(pod["tolerations"][0]["operator"].as<std::string>(), "Exists");
  EXPECT_FALSE(pod["tolerations"][0]["key"]);
  std::string args;
  for (const auto& a : pod["containers"][0]["args"]) args += a.as<std::string>() + " ";
  EXPECT_NE(args.find("--steer=tunnel"), std::string::npos) << args;
  EXPECT_NE(args.find("--cluster-cidr="), std::string::npos) << args;
  auto caps = pod["containers"][0]["securityContext"]["capabilities"];
  std::set<std::string> add;
  for (const auto& c : caps["add"]) add.insert(c.as<std::string>());
  EXPECT_EQ(add, (std::set<std::string>{"NET_ADMIN", "NET_RAW"}));
  EXPECT_FALSE(pod["containers"][0]["securityContext"]["privileged"]);
}

TEST_F(Manifests, GatewayRoleOnlyReadsAndNobodyGetsWildcards) {
  for (const auto& d : docs) {
    const auto kind = d["kind"].as<std::string>();
    if (kind != "ClusterRole" && kind != "Role") continue;
    for (const auto& rule : d["rules"])
      for (const auto& v : rule["verbs"]) {
        EXPECT_NE(v.as<std::string>(), "*") << d["metadata"]["name"];
        if (d["metadata"]["name"].as<std::string>() == "nsegress-gateway") {
          const auto verb = v.as<std::string>();
          EXPECT_TRUE(verb == "get" || verb == "list" || verb == "watch") << verb;
        }
      }
  }
}

TEST_F(Manifests, UninstallingTheComponentsKeepsTheCrdsAndSoTheLedger) {
  EXPECT_FALSE(main_kinds.count("CustomResourceDefinition"))
      << "kubectl delete -k manifests/ would delete every EgressIP with its CRD";
}

TEST_F(Manifests, TheControllerCanWriteNoPodAndReadersFindTheLeaderByEndpoints) {
  for (const auto& d : docs) {
    const auto kind = d["kind"].as<std::string>();
    if (kind != "ClusterRole" && kind != "Role") continue;
    for (const auto& rule : d["rules"])
      for (const auto& res : rule["resources"]) {
        if (res.as<std::string>() != "pods") continue;
        for (const auto& v : rule["verbs"]) {
          const auto verb = v.as<std::string>();
          EXPECT_TRUE(verb == "list" || verb == "watch") << d["metadata"]["name"] << ": " << verb;
        }
      }
  }
  auto svc = find("Service", "nsegress-controller");
  EXPECT_FALSE(svc["spec"]["selector"]) << "the leader's Endpoints, not a Pod label";
  find("Endpoints", "nsegress-controller");
  find("NetworkPolicy", "nsegress-controller");
}

TEST_F(Manifests, EveryPortNamesItsProtocolForServerSideApply) {
  for (const auto& d : docs) {
    if (d["kind"].as<std::string>() != "Service") continue;
    for (const auto& port : d["spec"]["ports"]) {
      const auto proto = port["protocol"].as<std::string>("");
      // UDP only for the failover lease book's port.
      EXPECT_EQ(proto, port["name"].as<std::string>("") == "lease" ? "UDP" : "TCP")
          << d["metadata"]["name"];
    }
  }
  auto metrics = find("Service", "nsegress-controller-metrics");
  EXPECT_EQ(metrics["spec"]["ports"][0]["targetPort"].as<std::string>(), "metrics")
      << "the metrics Service exposes metrics only";
}

TEST_F(Manifests, CrdsAreStructuralWithStatusAndPrinterColumns) {
  for (const char* name : {"egresspools.nsegress.io", "egressips.nsegress.io"}) {
    auto v = find("CustomResourceDefinition", name)["spec"]["versions"][0];
    EXPECT_TRUE(v["subresources"]["status"]) << name;
    EXPECT_GE(v["additionalPrinterColumns"].size(), 4u) << name;
    EXPECT_EQ(v["schema"]["openAPIV3Schema"]["type"].as<std::string>(), "object") << name;
  }
}

}  // namespace
