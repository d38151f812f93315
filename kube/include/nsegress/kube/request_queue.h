// Requests sent in the background, in order, by one thread of their own:
// for writes whose caller must not wait for them (Events; the namespace
// annotation written as soon as an address is committed). Bounded: when
// full, a request is refused at once (counted), never blocking the caller.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "nsegress/kube/api.h"

namespace nsegress::kube {

class RequestQueue {
 public:
  struct Item {
    std::string verb, path, body, content_type = "application/json";
    std::function<void(const Result<Response>&)> done;  // on the queue's thread
  };
  explicit RequestQueue(Api& api, size_t max_items = 100'000);
  ~RequestQueue();  // sends what is queued first (at most `drain_limit`), then stops
  RequestQueue(const RequestQueue&) = delete;
  RequestQueue& operator=(const RequestQueue&) = delete;

  bool push(Item item);  // false: full, refused
  // Waits until everything queued so far was sent (or `limit` passed).
  bool drain(std::chrono::milliseconds limit);
  uint64_t refused() const { return refused_; }
  uint64_t sent() const { return sent_; }

 private:
  void loop();
  Api& api_;
  size_t max_;
  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Item> items_;
  bool stop_ = false, busy_ = false;
  std::atomic<uint64_t> refused_{0}, sent_{0};
  std::thread thread_;
};

}  // namespace nsegress::kube
