// Change notifications: every committed batch of ledger events is POSTed as
// JSON to each configured URL, so a firewall (or the automation in front of
// it) can refresh now instead of at its next poll.
//
//   POST <url>
//   Content-Type: application/json
//   X-Nsegress-Timestamp: <Unix seconds>
//   X-Nsegress-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//   {"events": [{"at": ..., "kind": ..., "namespace": ..., "ip": ..., "pool": ...,
//                "node": ..., "message": ...}, ...]}
//
// Delivery per URL, in order, on a thread of its own (never the reconcile's
// or the feeds'): a 2xx is delivered; anything else is retried with
// exponential backoff (1 s, doubling, at most 5 min apart) up to
// max_attempts, then counted as a dead letter and dropped. The queue is
// bounded: when full, the oldest batch is dropped as a dead letter. Nothing
// is ever hidden: every outcome is counted (nsegress_webhook_*).
#pragma once

#include <prometheus/collectable.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nsegress/common/objects.h"
#include "nsegress/common/result.h"
#include "nsegress/http/client.h"

namespace nsegress::controller {

struct WebhookOptions {
  std::vector<std::string> urls;
  std::string secret;   // HMAC key (from --webhook-secret-file); empty: unsigned
  std::string ca_file;  // for https URLs; empty: the system's CAs
  int max_attempts = 10;
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{300'000};
  size_t max_queue = 10'000;  // batches per URL
  std::chrono::milliseconds timeout{10'000};
};

// The body and its signature (tests, and receivers' documentation).
std::string webhookBody(const std::vector<AuditEvent>& events);
std::string webhookSignature(const std::string& secret, const std::string& timestamp,
                             const std::string& body);

class Webhooks {
 public:
  // Validates every URL (a bad one is an error naming it) and starts one
  // sender per URL.
  static Result<std::unique_ptr<Webhooks>> start(WebhookOptions o);
  ~Webhooks();
  // Queues a committed batch for every URL (never blocks on the network).
  void notify(const std::vector<AuditEvent>& events);
  struct Stats {
    uint64_t delivered = 0, retries = 0, dead = 0, queued = 0;
  };
  Stats stats(size_t url) const;
  std::shared_ptr<prometheus::Collectable> metrics() const;

 private:
  struct Target;
  Webhooks() = default;
  std::vector<std::unique_ptr<Target>> targets_;
  WebhookOptions o_;
};

}  // namespace nsegress::controller
