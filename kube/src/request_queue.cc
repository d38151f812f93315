#include "nsegress/kube/request_queue.h"

namespace nsegress::kube {

RequestQueue::RequestQueue(Api& api, size_t max_items)
    : api_(api), max_(max_items), thread_([this] { loop(); }) {}

RequestQueue::~RequestQueue() {
  drain(std::chrono::seconds(5));
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool RequestQueue::push(Item item) {
  {
    std::lock_guard l(mu_);
    if (stop_ || items_.size() >= max_) {
      ++refused_;
      return false;
    }
    items_.push_back(std::move(item));
  }
  cv_.notify_one();
  return true;
}

bool RequestQueue::drain(std::chrono::milliseconds limit) {
  std::unique_lock l(mu_);
  return idle_cv_.wait_for(l, limit, [&] { return items_.empty() && !busy_; });
}

void RequestQueue::loop() {
  for (;;) {
    Item item;
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return stop_ || !items_.empty(); });
      if (items_.empty()) return;  // stopping, nothing left
      item = std::move(items_.front());
      items_.pop_front();
      busy_ = true;
    }
    auto r = api_.request(item.verb, item.path, item.body, item.content_type);
    ++sent_;
    if (item.done) item.done(r);
    {
      std::lock_guard l(mu_);
      busy_ = false;
      if (items_.empty()) idle_cv_.notify_all();
    }
  }
}

}  // namespace nsegress::kube
