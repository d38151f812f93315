// A small Kubernetes API client: requests (GET/POST/PUT/PATCH/DELETE) and
// streaming watches over HTTPS (Boost.Beast + OpenSSL), with a client-side
// token-bucket rate limiter. Requests share a few kept-alive connections;
// each watch has its own. The token is re-read from its file when it rotates. The real
// implementation of kube::Api; thread-safe (each call has its own I/O
// context; the TLS context and the limiter are shared).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "nsegress/kube/api.h"
#include "nsegress/kube/config.h"

namespace nsegress::kube {

// Token bucket: `qps` tokens per second, up to `burst`. Pure: time is passed in.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(double qps, double burst) : qps_(qps), burst_(burst), tokens_(burst) {}
  // How long the caller must wait before its request may go (0 = now); takes the token.
  std::chrono::nanoseconds reserve(Clock::time_point now);

 private:
  std::mutex mu_;
  double qps_, burst_, tokens_;
  std::optional<Clock::time_point> last_;
};

struct ClientOptions {
  double qps = 20, burst = 40;
  std::chrono::seconds timeout{30};
  size_t max_body = 64u << 20;  // responses larger than this are refused
};

class Client final : public Api {
 public:
  explicit Client(KubeConfig config, ClientOptions opts = {});
  ~Client() override;
  Result<Response> request(const std::string& verb, const std::string& path,
                           const std::string& body = "",
                           const std::string& content_type = "application/json") override;
  // A watch ends within 100 ms of `*cancel` becoming true (so a stopping
  // informer does not wait for the next event or the server's timeout).
  Result<int> watch(const std::string& path,
                    const std::function<bool(const std::string&)>& on_event,
                    std::chrono::seconds timeout,
                    const std::atomic<bool>* cancel = nullptr) override;
  const KubeConfig& config() const { return cfg_; }
  uint64_t throttled() const { return throttled_; }
  // Requests the API server refused for their credentials: "<code> <verb>
  // <resource>" (e.g. "403 patch pods") → count. Each is also logged (at
  // most every 30 s per key, with the count).
  std::map<std::string, uint64_t> denied() const;
  // The bearer token in use: cfg.token, or the token file's content, re-read
  // when the file changes (and at once after a 401, retrying that request once).
  std::string token(bool force_reread = false);
  // Connections opened for requests so far (kept alive and reused: at most
  // kMaxIdle stay open between requests).
  uint64_t connections() const { return connections_; }
  uint64_t requests() const { return requests_; }  // requests and watches sent
  static constexpr size_t kMaxIdle = 4;
  struct Conn;

 private:
  struct Impl;
  void noteDenied(int status, const std::string& verb, const std::string& path);
  KubeConfig cfg_;
  ClientOptions opts_;
  RateLimiter limiter_;
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> throttled_{0};
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> requests_{0};
};

}  // namespace nsegress::kube
