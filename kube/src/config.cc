#include "nsegress/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nsegress::kube {

namespace {
constexpr const char* kSaDir = "/var/run/secrets/kubernetes.io/serviceaccount";

std::string decodeBase64(const std::string& in, bool* ok) {
  static const std::string chars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  *ok = true;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    auto p = chars.find(c);
    if (p == std::string::npos) {
      *ok = false;
      return {};
    }
    val = (val << 6) + static_cast<int>(p);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

std::string str(const YAML::Node& n, const char* key) {
  if (!n || !n.IsMap()) return {};
  auto v = n[key];
  return v && v.IsScalar() ? v.Scalar() : std::string();
}

YAML::Node named(const YAML::Node& list, const std::string& name, const char* inner) {
  if (!list || !list.IsSequence()) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& e : list)
    if (e.IsMap() && str(e, "name") == name) return e[inner];
  return YAML::Node(YAML::NodeType::Undefined);
}
}  // namespace

Env Env::system() {
  return Env{[](const std::string& k) -> std::optional<std::string> {
               const char* v = std::getenv(k.c_str());
               return v ? std::optional<std::string>(v) : std::nullopt;
             },
             [](const std::string& path) -> Result<std::string> {
               std::ifstream in(path, std::ios::binary);
               if (!in) return makeError(ENOENT, path + ": cannot read");
               std::stringstream ss;
               ss << in.rdbuf();
               return ss.str();
             }};
}

Result<KubeConfig> parseServerUrl(const std::string& url, KubeConfig base) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    base.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    base.tls = false;
    rest = url.substr(7);
  } else {
    return makeError(EINVAL, "server \"" + url + "\": must start with https:// or http://");
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find('/') != std::string::npos)
    return makeError(EINVAL, "server \"" + url + "\": expected scheme://host[:port]");
  std::string host = rest, port = base.tls ? "443" : "80";
  if (rest.front() == '[') {  // [v6]:port
    auto close = rest.find(']');
    if (close == std::string::npos)
      return makeError(EINVAL, "server \"" + url + "\": unbalanced [");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return makeError(EINVAL, "server \"" + url + "\": junk after ]");
      port = rest.substr(close + 2);
    }
  } else if (auto c = rest.rfind(':'); c != std::string::npos) {
    host = rest.substr(0, c);
    port = rest.substr(c + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) == 0 ||
      std::stoul(port) > 65535)
    return makeError(EINVAL, "server \"" + url + "\": bad host or port");
  base.host = host;
  base.port = port;
  return base;
}

std::string trimToken(std::string t) {
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  return t;
}

Result<KubeConfig> inCluster(const Env& env) {
  auto host = env.getenv("KUBERNETES_SERVICE_HOST");
  auto port = env.getenv("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty())
    return makeError(ENOENT, "in-cluster: KUBERNETES_SERVICE_HOST is not set");
  KubeConfig c;
  c.source = "in-cluster service account";
  const std::string h = host->find(':') != std::string::npos ? "[" + *host + "]" : *host;
  auto parsed = parseServerUrl("https://" + h + ":" + (port && !port->empty() ? *port : "443"), c);
  if (!parsed) return parsed.error();
  auto token = env.read_file(std::string(kSaDir) + "/token");
  if (!token) return makeError(ENOENT, "in-cluster: " + token.error().message);
  auto ca = env.read_file(std::string(kSaDir) + "/ca.crt");
  if (!ca) return makeError(ENOENT, "in-cluster: " + ca.error().message);
  parsed->token = trimToken(*token);
  parsed->token_file = std::string(kSaDir) + "/token";
  parsed->ca_pem = *ca;
  return parsed;
}

Result<KubeConfig> fromKubeconfig(const std::string& text, const std::string& base_dir,
                                  const std::string& context, const Env& env) {
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return makeError(EINVAL, std::string("kubeconfig: not valid YAML: ") + e.what());
  }
  if (!doc.IsMap()) return makeError(EINVAL, "kubeconfig: not a map");
  const std::string ctx_name = context.empty() ? str(doc, "current-context") : context;
  if (ctx_name.empty()) return makeError(EINVAL, "kubeconfig: no current-context and none given");
  auto ctx = named(doc["contexts"], ctx_name, "context");
  if (!ctx)
    return makeError(EINVAL, "kubeconfig: context \"" + ctx_name + "\" not found in contexts");
  const std::string cluster_name = str(ctx, "cluster"), user_name = str(ctx, "user");
  auto cluster = named(doc["clusters"], cluster_name, "cluster");
  if (!cluster)
    return makeError(EINVAL, "kubeconfig: cluster \"" + cluster_name + "\" not found in clusters");
  KubeConfig c;
  c.source = "kubeconfig context " + ctx_name;
  auto parsed = parseServerUrl(str(cluster, "server"), c);
  if (!parsed)
    return makeError(EINVAL,
                     "kubeconfig: clusters[" + cluster_name + "]." + parsed.error().message);
  c = *parsed;
  c.insecure_skip_verify = str(cluster, "insecure-skip-tls-verify") == "true";
  auto fileOrData = [&](const YAML::Node& n, const char* file_key, const char* data_key,
                        const std::string& where) -> Result<std::string> {
    if (auto d = str(n, data_key); !d.empty()) {
      bool ok;
      auto v = decodeBase64(d, &ok);
      if (!ok) return makeError(EINVAL, "kubeconfig: " + where + "." + data_key + ": not base64");
      return v;
    }
    if (auto f = str(n, file_key); !f.empty()) {
      auto r = env.read_file(f[0] == '/' ? f : base_dir + "/" + f);
      if (!r)
        return makeError(ENOENT,
                         "kubeconfig: " + where + "." + file_key + ": " + r.error().message);
      return *r;
    }
    return std::string();
  };
  auto ca = fileOrData(cluster, "certificate-authority", "certificate-authority-data",
                       "clusters[" + cluster_name + "]");
  if (!ca) return ca.error();
  c.ca_pem = *ca;
  if (!user_name.empty()) {
    auto user = named(doc["users"], user_name, "user");
    if (!user)
      return makeError(EINVAL, "kubeconfig: user \"" + user_name + "\" not found in users");
    const std::string where = "users[" + user_name + "]";
    c.token = str(user, "token");
    if (c.token.empty()) {
      auto tf = fileOrData(user, "tokenFile", "__none__", where);
      if (!tf) return tf.error();
      c.token = trimToken(*tf);
      if (auto f = str(user, "tokenFile"); !f.empty())
        c.token_file = f[0] == '/' ? f : base_dir + "/" + f;
    }
    auto cert = fileOrData(user, "client-certificate", "client-certificate-data", where);
    if (!cert) return cert.error();
    auto key = fileOrData(user, "client-key", "client-key-data", where);
    if (!key) return key.error();
    if (cert->empty() != key->empty())
      return makeError(
          EINVAL, "kubeconfig: " + where + ": client certificate and key must be given together");
    c.client_cert_pem = *cert;
    c.client_key_pem = *key;
  }
  return c;
}

Result<KubeConfig> autoDetect(const Env& env, const std::string& kubeconfig_path) {
  std::string path = kubeconfig_path;
  if (path.empty()) {
    if (auto k = env.getenv("KUBECONFIG"); k && !k->empty()) path = k->substr(0, k->find(':'));
  }
  if (path.empty()) {
    if (env.getenv("KUBERNETES_SERVICE_HOST")) return inCluster(env);
    if (auto home = env.getenv("HOME")) path = *home + "/.kube/config";
  }
  auto text = env.read_file(path);
  if (!text) return makeError(ENOENT, "no Kubernetes configuration: " + text.error().message);
  auto slash = path.rfind('/');
  return fromKubeconfig(*text, slash == std::string::npos ? "." : path.substr(0, slash), "", env);
}

}  // namespace nsegress::kube
