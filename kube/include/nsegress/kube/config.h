// How to reach the Kubernetes API: in-cluster (service account) or kubeconfig.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "nsegress/common/result.h"

namespace nsegress::kube {

struct KubeConfig {
  std::string host;  // name or address
  std::string port = "443";
  bool tls = true;
  std::string token;  // bearer token
  // Where the token came from, if a file (in-cluster: the projected service
  // account token, which the kubelet rotates). The client re-reads it when
  // it changes, and at once after a 401.
  std::string token_file;
  std::string ca_pem;           // trusted CA bundle (PEM); empty: system store
  std::string client_cert_pem;  // client certificate auth
  std::string client_key_pem;
  bool insecure_skip_verify = false;
  std::string source;  // where the configuration came from, for messages
};

// Reads files and environment through these, so parsing is testable.
struct Env {
  std::function<std::optional<std::string>(const std::string&)> getenv;
  std::function<Result<std::string>(const std::string&)> read_file;
  static Env system();
};

// KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount.
Result<KubeConfig> inCluster(const Env& env);
// A kubeconfig document; `context` empty = current-context. Relative file
// paths are resolved against `base_dir`.
Result<KubeConfig> fromKubeconfig(const std::string& yaml, const std::string& base_dir,
                                  const std::string& context, const Env& env);
// $KUBECONFIG or ~/.kube/config, else in-cluster.
Result<KubeConfig> autoDetect(const Env& env, const std::string& kubeconfig_path = "");

// A token as read from a file: trailing newline and spaces removed.
std::string trimToken(std::string t);

// Splits "https://host:port" (or http). Errors name the problem.
Result<KubeConfig> parseServerUrl(const std::string& url, KubeConfig base);

}  // namespace nsegress::kube
