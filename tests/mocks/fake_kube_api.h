// A fake of kube::Api for unit tests of pure logic (informers, the elector,
// the write-back): requests go to a handler the test provides (default: 404)
// and are recorded; watches replay scripted event lines. The real client and
// a real kube-apiserver are exercised by tests/kube.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "nsegress/kube/api.h"

namespace nsegress::testing {

class FakeKubeApi final : public kube::Api {
 public:
  struct Call {
    std::string verb, path, body, content_type;
  };
  struct Watch {
    std::vector<std::string> lines;  // JSON event lines delivered in order
    Result<int> status = 200;        // what watch() returns afterwards
  };
  std::function<Result<kube::Response>(const Call&)> on_request;

  Result<kube::Response> request(const std::string& verb, const std::string& path,
                                 const std::string& body,
                                 const std::string& content_type) override {
    Call c{verb, path, body, content_type};
    {
      std::lock_guard l(mu_);
      calls_.push_back(c);
    }
    if (on_request) return on_request(c);
    return kube::Response{404, R"({"kind":"Status","code":404})"};
  }
  Result<int> watch(const std::string& path,
                    const std::function<bool(const std::string&)>& on_event, std::chrono::seconds,
                    const std::atomic<bool>*) override {
    Watch w;
    {
      std::lock_guard l(mu_);
      calls_.push_back({"WATCH", path, "", ""});
      if (watches_.empty()) return makeError(ECONNREFUSED, "fake: no watch scripted");
      w = std::move(watches_.front());
      watches_.pop_front();
    }
    for (const auto& line : w.lines)
      if (!on_event(line)) break;
    return w.status;
  }
  void scriptWatch(Watch w) {
    std::lock_guard l(mu_);
    watches_.push_back(std::move(w));
  }
  std::vector<Call> calls() const {
    std::lock_guard l(mu_);
    return calls_;
  }
  void clearCalls() {
    std::lock_guard l(mu_);
    calls_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Call> calls_;
  std::deque<Watch> watches_;
};

}  // namespace nsegress::testing
