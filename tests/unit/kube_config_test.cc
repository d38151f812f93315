#include <gtest/gtest.h>

#include <map>

#include "nsegress/kube/client.h"
#include "nsegress/kube/config.h"

namespace nsegress::kube {
namespace {

struct FakeEnv {
  std::map<std::string, std::string> vars, files;
  Env env() {
    return Env{[this](const std::string& k) -> std::optional<std::string> {
                 auto it = vars.find(k);
                 return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
               },
               [this](const std::string& p) -> Result<std::string> {
                 auto it = files.find(p);
                 if (it == files.end()) return makeError(ENOENT, p + ": cannot read");
                 return it->second;
               }};
  }
};

const char* kKubeconfig = R"(
apiVersion: v1
kind: Config
current-context: lab
contexts:
- name: lab
  context: {cluster: c1, user: u1}
- name: other
  context: {cluster: c2, user: u2}
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt}
- name: c2
  cluster: {server: "https://[fd00::1]:8443", insecure-skip-tls-verify: true}
users:
- name: u1
  user: {token: abc123}
- name: u2
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
)";

TEST(KubeConfig, KubeconfigCurrentContextTokenAndCaFile) {
  FakeEnv f;
  f.files["/etc/k/ca.crt"] = "PEM";
  auto c = fromKubeconfig(kKubeconfig, "/etc/k", "", f.env());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_EQ(c->port, "6443");
  EXPECT_TRUE(c->tls);
  EXPECT_EQ(c->token, "abc123");
  EXPECT_EQ(c->ca_pem, "PEM");
}

TEST(KubeConfig, KubeconfigOtherContextClientCertAndIpv6) {
  FakeEnv f;
  auto c = fromKubeconfig(kKubeconfig, "/etc/k", "other", f.env());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "fd00::1");
  EXPECT_EQ(c->port, "8443");
  EXPECT_TRUE(c->insecure_skip_verify);
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(c->client_key_pem, "KEY");
}

TEST(KubeConfig, MalformedKubeconfigsAreClearErrors) {
  FakeEnv f;
  struct Case {
    std::string text, ctx, want;
  };
  for (const auto& c : std::vector<Case>{
           {"{{{", "", "not valid YAML"},
           {"[1, 2]", "", "not a map"},
           {"contexts: []", "", "no current-context"},
           {kKubeconfig, "nosuch", "context \"nosuch\" not found"},
           {"current-context: x\ncontexts: [{name: x, context: {cluster: y}}]\n", "",
            "cluster \"y\" not found"},
           {"current-context: x\ncontexts: [{name: x, context: {cluster: y}}]\nclusters: [{name: "
            "y, cluster: {server: "
            "\"ftp://h\"}}]\n",
            "", "must start with https:// or http://"},
           {"current-context: x\ncontexts: [{name: x, context: {cluster: y}}]\nclusters: [{name: "
            "y, cluster: {server: "
            "\"https://h:99999\"}}]\n",
            "", "bad host or port"},
           {"current-context: x\ncontexts: [{name: x, context: {cluster: y}}]\nclusters: [{name: "
            "y, cluster: {server: \"https://h:99999999999999999999999\"}}]\n",
            "", "bad host or port"},  // once an uncaught std::out_of_range
           {"current-context: x\ncontexts: [{name: x, context: {cluster: y, user: z}}]\nclusters: "
            "[{name: y, cluster: "
            "{server: \"https://h\", certificate-authority-data: \"!!\"}}]\n",
            "", "not base64"},
           {kKubeconfig, "", "ca.crt: cannot read"},
       }) {
    auto r = fromKubeconfig(c.text, "/etc/k", c.ctx, f.env());
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message.find(c.want), std::string::npos) << r.error().message;
  }
}

TEST(KubeConfig, InClusterUsesServiceAccountFiles) {
  FakeEnv f;
  EXPECT_FALSE(inCluster(f.env()));
  f.vars["KUBERNETES_SERVICE_HOST"] = "10.96.0.1";
  f.vars["KUBERNETES_SERVICE_PORT"] = "443";
  auto missing = inCluster(f.env());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("serviceaccount/token"), std::string::npos);
  f.files["/var/run/secrets/kubernetes.io/serviceaccount/token"] = "tok\n";
  f.files["/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"] = "CA";
  auto c = inCluster(f.env());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "10.96.0.1");
  EXPECT_EQ(c->token, "tok");
  EXPECT_EQ(c->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token")
      << "projected tokens rotate: the client re-reads the file";
  EXPECT_EQ(c->ca_pem, "CA");
}

TEST(RateLimiter, BurstThenQps) {
  RateLimiter rl(10, 3);
  auto t = RateLimiter::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(rl.reserve(t).count(), 0);
  EXPECT_EQ(rl.reserve(t).count(), 0);
  EXPECT_EQ(rl.reserve(t).count(), 0);
  EXPECT_NEAR(std::chrono::duration<double>(rl.reserve(t)).count(), 0.1, 1e-6);
  EXPECT_NEAR(std::chrono::duration<double>(rl.reserve(t)).count(), 0.2, 1e-6);
  // After a quiet second the bucket is full again (but never above burst).
  t += std::chrono::seconds(10);
  EXPECT_EQ(rl.reserve(t).count(), 0);
  EXPECT_EQ(rl.reserve(t).count(), 0);
  EXPECT_EQ(rl.reserve(t).count(), 0);
  EXPECT_GT(rl.reserve(t).count(), 0);
}

TEST(KubeClient, UnreachableServerIsAnErrorNotAHang) {
  KubeConfig c;
  c.host = "127.0.0.1";
  c.port = "1";  // nothing listens on port 1
  c.tls = false;
  Client client(c, ClientOptions{100, 100, std::chrono::seconds(2)});
  auto r = client.request("GET", "/api");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("127.0.0.1:1"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace nsegress::kube
