#include "nsegress/controller/webhooks.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "nsegress/common/encoding.h"
#include "nsegress/common/json.h"

namespace nsegress::controller {

std::string webhookBody(const std::vector<AuditEvent>& events) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& e : events)
    arr.push_back({{"at", formatTime(e.at)},
                   {"kind", e.kind},
                   {"namespace", e.ns},
                   {"ip", e.ip},
                   {"pool", e.pool},
                   {"node", e.node},
                   {"message", e.message}});
  return dumpJson(nlohmann::json{{"events", arr}});
}

std::string webhookSignature(const std::string& secret, const std::string& timestamp,
                             const std::string& body) {
  const std::string msg = timestamp + "." + body;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), md, &n);
  return "sha256=" + hexEncode(std::string_view(reinterpret_cast<const char*>(md), n));
}

struct Webhooks::Target {
  http::Url url;
  std::string label;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;  // bodies
  bool stop = false;
  bool in_flight = false;  // the front is being sent
  Stats stats;
  std::thread thread;
};

namespace {

void run(Webhooks::Stats& stats, std::mutex& mu, std::condition_variable& cv,
         std::deque<std::string>& queue, bool& stop, bool& in_flight, const http::Url& url,
         const std::string& label, const WebhookOptions& o) {
  http::ClientOptions co;
  co.timeout = o.timeout;
  co.ca_file = o.ca_file;
  std::unique_lock l(mu);
  while (true) {
    cv.wait(l, [&] { return stop || !queue.empty(); });
    if (stop) return;
    const std::string body = queue.front();
    in_flight = true;
    auto backoff = o.first_backoff;
    bool done = false;
    for (int attempt = 1; attempt <= o.max_attempts && !stop; ++attempt) {
      l.unlock();
      const std::string ts = std::to_string(static_cast<int64_t>(time(nullptr)));
      std::vector<std::pair<std::string, std::string>> headers = {
          {"Content-Type", "application/json"}, {"X-Nsegress-Timestamp", ts}};
      if (!o.secret.empty())
        headers.emplace_back("X-Nsegress-Signature", webhookSignature(o.secret, ts, body));
      auto r = http::request(url, "POST", headers, body, co);
      l.lock();
      if (r && r->status >= 200 && r->status < 300) {
        done = true;
        break;
      }
      stats.retries += attempt < o.max_attempts;
      spdlog::warn("webhook {}: attempt {} of {} failed: {}", label, attempt, o.max_attempts,
                   r ? "HTTP " + std::to_string(r->status) : r.error().message);
      if (attempt < o.max_attempts) {
        cv.wait_for(l, backoff, [&] { return stop; });
        backoff = std::min(backoff * 2, o.max_backoff);
      }
    }
    if (stop) return;
    in_flight = false;
    queue.pop_front();
    if (done) {
      stats.delivered++;
    } else {
      stats.dead++;
      spdlog::error("webhook {}: a notification was dropped after {} attempts (dead letter)", label,
                    o.max_attempts);
    }
    stats.queued = queue.size();
  }
}

}  // namespace

Result<std::unique_ptr<Webhooks>> Webhooks::start(WebhookOptions o) {
  std::unique_ptr<Webhooks> w(new Webhooks());
  w->o_ = std::move(o);
  if (w->o_.max_attempts < 1) return makeError(EINVAL, "webhook attempts must be at least 1");
  for (const auto& u : w->o_.urls) {
    auto url = http::Url::parse(u);
    if (!url) return makeError(EINVAL, "--webhook " + url.error().message);
    auto t = std::make_unique<Target>();
    t->url = *url;
    t->label = url->redacted();
    w->targets_.push_back(std::move(t));
  }
  for (auto& t : w->targets_) {
    Target* p = t.get();
    const WebhookOptions* opts = &w->o_;
    p->thread = std::thread([p, opts] {
      run(p->stats, p->mu, p->cv, p->queue, p->stop, p->in_flight, p->url, p->label, *opts);
    });
  }
  return w;
}

Webhooks::~Webhooks() {
  for (auto& t : targets_) {
    {
      std::lock_guard l(t->mu);
      t->stop = true;
    }
    t->cv.notify_all();
  }
  for (auto& t : targets_)
    if (t->thread.joinable()) t->thread.join();
}

void Webhooks::notify(const std::vector<AuditEvent>& events) {
  if (events.empty() || targets_.empty()) return;
  const std::string body = webhookBody(events);
  for (auto& t : targets_) {
    {
      std::lock_guard l(t->mu);
      if (t->queue.size() >= o_.max_queue) {
        // Full: the oldest waiting batch goes (never the one in flight).
        if (!t->in_flight)
          t->queue.pop_front();
        else if (t->queue.size() >= 2)
          t->queue.erase(t->queue.begin() + 1);
        t->stats.dead++;
      }
      t->queue.push_back(body);
      t->stats.queued = t->queue.size();
    }
    t->cv.notify_all();
  }
}

Webhooks::Stats Webhooks::stats(size_t i) const {
  std::lock_guard l(targets_.at(i)->mu);
  return targets_.at(i)->stats;
}

namespace {
class WebhookMetrics : public prometheus::Collectable {
 public:
  explicit WebhookMetrics(const Webhooks& w, std::vector<std::string> labels)
      : w_(w), labels_(std::move(labels)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    using T = prometheus::MetricType;
    prometheus::MetricFamily del{"nsegress_webhook_deliveries_total",
                                 "Webhook notifications by outcome: delivered (2xx), retry (a "
                                 "failed attempt that will be repeated), dead (given up: "
                                 "attempts exhausted or the queue was full)",
                                 T::Counter,
                                 {}};
    prometheus::MetricFamily q{
        "nsegress_webhook_queue_length", "Webhook notifications waiting to be sent", T::Gauge, {}};
    for (size_t i = 0; i < labels_.size(); ++i) {
      const auto s = w_.stats(i);
      for (auto [result, v] : {std::pair{"delivered", s.delivered}, std::pair{"retry", s.retries},
                               std::pair{"dead", s.dead}}) {
        prometheus::ClientMetric m;
        m.label = {{"url", labels_[i]}, {"result", result}};
        m.counter.value = static_cast<double>(v);
        del.metric.push_back(m);
      }
      prometheus::ClientMetric m;
      m.label = {{"url", labels_[i]}};
      m.gauge.value = static_cast<double>(s.queued);
      q.metric.push_back(m);
    }
    return {del, q};
  }

 private:
  const Webhooks& w_;
  std::vector<std::string> labels_;
};
}  // namespace

std::shared_ptr<prometheus::Collectable> Webhooks::metrics() const {
  std::vector<std::string> labels;
  for (const auto& t : targets_) labels.push_back(t->label);
  return std::make_shared<WebhookMetrics>(*this, std::move(labels));
}

}  // namespace nsegress::controller
