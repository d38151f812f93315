// The Kubernetes API as nsegress uses it: requests and watches. Injected
// into everything that talks to the API server (informers, the leader
// elector, the ledger store, the write-back), so their logic is unit-tested
// against a fake (tests/mocks/fake_kube_api.h) and integration-tested
// against a real kube-apiserver (tests/kube). Real: kube::Client.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "nsegress/common/result.h"

namespace nsegress::kube {

struct Response {
  int status = 0;
  std::string body;
};

class Api {
 public:
  virtual ~Api() = default;
  // `content_type` e.g. application/merge-patch+json for PATCH.
  virtual Result<Response> request(const std::string& verb, const std::string& path,
                                   const std::string& body = "",
                                   const std::string& content_type = "application/json") = 0;
  // Streams a watch (path with ?watch=1...): `on_event` gets each JSON line;
  // returning false stops. Ends when the server closes the stream, or soon
  // after `*cancel` becomes true. Returns the HTTP status.
  virtual Result<int> watch(const std::string& path,
                            const std::function<bool(const std::string&)>& on_event,
                            std::chrono::seconds timeout,
                            const std::atomic<bool>* cancel = nullptr) = 0;
};

}  // namespace nsegress::kube
