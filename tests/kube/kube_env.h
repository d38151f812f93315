// A real kube-apiserver (built from Debian's source by build-apiserver.sh)
// with etcd, inside a private network namespace with only loopback;
// kube-controller-manager runs only the namespace controller. Tokens:
// admin (system:masters), the controller's and the gateway's service accounts,
// and "nobody" (no rights).
#pragma once

#include <memory>
#include <string>

#include "lab.h"
#include "nsegress/kube/client.h"

namespace nsegress::testing {

class KubeEnv {
 public:
  // Starts etcd and kube-apiserver; throws with the logs if they do not come up.
  KubeEnv();
  ~KubeEnv();
  KubeEnv(const KubeEnv&) = delete;

  static std::string binDir();  // $NSEGRESS_KUBE_BIN or /var/cache/nsegress-kube/bin
  static bool available();

  const std::string& netns() const { return netns_; }
  kube::KubeConfig config(const std::string& token) const;
  kube::KubeConfig admin() const { return config("admin-token"); }
  // kubectl as `token` against this server; returns rc, output in *out.
  int kubectl(const std::string& args, std::string* out,
              const std::string& token = "admin-token") const;
  // Restarts kube-apiserver (etcd keeps the data).
  void restartApiserver();
  void stopApiserver();
  void startApiserver();
  std::string apiserverLog() const;
  // A kubeconfig for `token`; returns its path.
  std::string writeKubeconfig(const std::string& token,
                              const std::string& server = "https://127.0.0.1:6443") const;
  // Connects another network namespace (a lab's gateway node) to the API
  // server with a veth pair (10.255.0.0/30); returns the server URL to use
  // from there (the serving certificate covers it). Deleting either
  // namespace removes the link.
  std::string linkTo(const std::string& netns, int index = 0) const;
  const std::string& dir() const { return dir_; }

 private:
  void waitReady();
  std::string dir_, netns_;
  std::unique_ptr<lab::Process> etcd_, apiserver_, controller_manager_;
};

}  // namespace nsegress::testing
