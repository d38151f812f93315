#include "kube_env.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace nsegress::testing {

std::string KubeEnv::binDir() {
  const char* b = std::getenv("NSEGRESS_KUBE_BIN");
  return b ? b : "/var/cache/nsegress-kube/bin";
}

bool KubeEnv::available() {
  return access((binDir() + "/kube-apiserver").c_str(), X_OK) == 0;
}

KubeEnv::KubeEnv() {
  netns_ = "nse-kube-" + std::to_string(getpid());
  char tmpl[] = "/tmp/nsegress-kube-XXXXXX";
  dir_ = mkdtemp(tmpl);
  try {
    lab::must("ip netns add " + netns_);
    lab::must("ip -n " + netns_ + " link set lo up");
    const std::string d = dir_;
    // A CA, a serving certificate for 127.0.0.1, service-account keys.
    lab::must("cd " + d +
              " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=nsegress-test-ca "
              "-keyout ca.key -out ca.crt"
              " && openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "
              "serving.key -out serving.csr"
              " && printf 'subjectAltName=IP:127.0.0.1,IP:10.255.0.1,DNS:localhost\\n' > san.ext"
              " && openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
              "-days 2 -extfile san.ext "
              "-out serving.crt"
              " && openssl genrsa -out sa.key 2048 && openssl rsa -in sa.key -pubout -out sa.pub");
    std::ofstream(d + "/tokens.csv") << "admin-token,admin,1,\"system:masters\"\n"
                                     << "controller-token,system:serviceaccount:nsegress-system:"
                                        "nsegress-controller,2,\"system:serviceaccounts\"\n"
                                     << "gateway-token,system:serviceaccount:nsegress-system:"
                                        "nsegress-gateway,3,\"system:serviceaccounts\"\n"
                                     << "nobody-token,nobody,4,\"\"\n";
    etcd_ = std::make_unique<lab::Process>(
        std::vector<std::string>{
            "/usr/bin/ip", "netns", "exec", netns_, "/usr/bin/etcd", "--data-dir", d + "/etcd",
            "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls",
            "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380"},
        d + "/etcd.log");
    startApiserver();
    // The namespace controller alone: deleting a namespace completes (its
    // contents removed, then the namespace) once no finalizer holds it.
    controller_manager_ = std::make_unique<lab::Process>(
        std::vector<std::string>{
            "/usr/bin/ip", "netns", "exec", netns_, binDir() + "/kube-controller-manager",
            "--kubeconfig=" + writeKubeconfig("admin-token"), "--controllers=namespace",
            "--leader-elect=false", "--use-service-account-credentials=false", "--port=0",
            "--secure-port=10257", "--cert-dir=" + d + "/kcm-certs"},
        d + "/controller-manager.log");
  } catch (...) {
    this->~KubeEnv();
    throw;
  }
}

void KubeEnv::startApiserver() {
  const std::string d = dir_;
  apiserver_ = std::make_unique<lab::Process>(
      std::vector<std::string>{
          "/usr/bin/ip", "netns", "exec", netns_, binDir() + "/kube-apiserver",
          "--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0",
          "--advertise-address=127.0.0.1", "--secure-port=6443",
          "--tls-cert-file=" + d + "/serving.crt", "--tls-private-key-file=" + d + "/serving.key",
          "--token-auth-file=" + d + "/tokens.csv", "--authorization-mode=RBAC",
          "--disable-admission-plugins=ServiceAccount",
          "--service-account-key-file=" + d + "/sa.pub",
          "--service-account-signing-key-file=" + d + "/sa.key",
          "--service-account-issuer=https://kubernetes.default.svc",
          "--service-cluster-ip-range=10.96.0.0/24", "--etcd-compaction-interval=10s",
          // Watches go to etcd, so a compacted version gives 410 Gone deterministically.
          "--watch-cache=false", "--cert-dir=" + d + "/certs"},
      d + "/apiserver.log");
  waitReady();
}

void KubeEnv::waitReady() {
  lab::NetnsEnter in(netns_);
  kube::Client c(admin(), kube::ClientOptions{100, 100, std::chrono::seconds(2)});
  const bool ok = lab::eventually(
      [&] {
        auto r = c.request("GET", "/readyz");
        return r && r->status == 200;
      },
      std::chrono::seconds(60));
  if (!ok) throw std::runtime_error("kube-apiserver did not become ready:\n" + apiserverLog());
}

void KubeEnv::stopApiserver() {
  apiserver_.reset();
}

void KubeEnv::restartApiserver() {
  stopApiserver();
  startApiserver();
}

std::string KubeEnv::apiserverLog() const {
  std::ifstream in(dir_ + "/apiserver.log");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
}

KubeEnv::~KubeEnv() {
  controller_manager_.reset();
  apiserver_.reset();
  etcd_.reset();
  lab::run("ip netns pids " + netns_ + " | xargs -r kill -9");
  lab::run("ip netns del " + netns_);
  if (!dir_.empty()) lab::run("rm -rf " + dir_);
}

kube::KubeConfig KubeEnv::config(const std::string& token) const {
  kube::KubeConfig c;
  c.host = "127.0.0.1";
  c.port = "6443";
  c.tls = true;
  c.token = token;
  std::ifstream in(dir_ + "/ca.crt");
  c.ca_pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  c.source = "test";
  return c;
}

std::string KubeEnv::writeKubeconfig(const std::string& token, const std::string& server) const {
  const std::string path =
      dir_ + "/" + token + "-" + std::to_string(std::hash<std::string>{}(server)) + ".kubeconfig";
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                      << "contexts: [{name: test, context: {cluster: test, user: test}}]\n"
                      << "clusters: [{name: test, cluster: {server: \"" << server
                      << "\", "
                         "certificate-authority: "
                      << dir_ << "/ca.crt}}]\n"
                      << "users: [{name: test, user: {token: " << token << "}}]\n";
  return path;
}

std::string KubeEnv::linkTo(const std::string& netns, int index) const {
  // The API server's side always has 10.255.0.1 (the address its certificate
  // names), once per link; the other side gets 10.255.0.(2 + index).
  const std::string dev = "kapi" + std::to_string(index);
  const std::string peer = "10.255.0." + std::to_string(2 + index);
  lab::must("ip -n " + netns_ + " link add " + dev + " type veth peer name kapi0 netns " + netns);
  lab::must("ip -n " + netns_ + " addr add 10.255.0.1/32 dev " + dev);
  lab::must("ip -n " + netns + " addr add " + peer + "/32 dev kapi0");
  lab::must("ip -n " + netns_ + " link set " + dev + " up");
  lab::must("ip -n " + netns + " link set kapi0 up");
  lab::must("ip -n " + netns_ + " route add " + peer + "/32 dev " + dev);
  lab::must("ip -n " + netns + " route add 10.255.0.1/32 dev kapi0");
  return "https://10.255.0.1:6443";
}

int KubeEnv::kubectl(const std::string& args, std::string* out, const std::string& token) const {
  return lab::run("ip netns exec " + netns_ + " kubectl --server https://127.0.0.1:6443 --token " +
                      token + " --certificate-authority " + dir_ + "/ca.crt " + args,
                  out);
}

}  // namespace nsegress::testing
