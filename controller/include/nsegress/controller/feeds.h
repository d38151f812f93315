// The firewall feeds (docs/firewall-team-guide.md): the live addresses of one
// pool, optionally narrowed to namespaces with given labels, in each
// firewall's own format, with a checksum beside each and the validators of
// conditional requests. Pure: a View in, bytes out (routes in api.cc).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include <optional>
#include <string>

#include "nsegress/common/objects.h"
#include "nsegress/common/result.h"
#include "nsegress/controller/controller.h"
#include "nsegress/controller/http.h"

namespace nsegress::controller {

enum class FeedFormat {
  kEdl,         // PAN-OS External Dynamic List: one address a line
  kPanos,       // the same, each line with a comment naming the namespace
  kFortigate,   // FortiGate external threat feed: one address a line
  kCheckpoint,  // Check Point Generic Data Center JSON
};
std::optional<FeedFormat> feedFormat(std::string_view name);

struct Feed {
  std::string content_type;
  std::string body;
  std::string etag;           // strong: "<sha-256 of the body, 32 hex digits>"
  Seconds last_modified = 0;  // the newest change of the pool's records (0 unknown)
  bool empty = false;         // the pool exists and has no live address here
};

// `labels`: none (every namespace of the pool) or "key=value[,key=value…]"
// (Kubernetes label syntax; all must match; a key at most once).
// Errors: EINVAL (a malformed selection: 400), ENOENT (no such pool: 404).
Result<Feed> renderFeed(const View& v, const std::string& pool,
                        const std::optional<std::string>& labels, FeedFormat format);
// The checksum file beside a feed: the body's SHA-256, hex, and a newline.
std::string sha256Hex(std::string_view data);
// A namespace's stable id in Check Point objects: a name-based UUID
// (version 5, RFC 9562) of the namespace's name in nsegress's own UUID
// namespace — the same name, the same id, on every controller, forever.
std::string namespaceUuid(const std::string& ns);
// HTTP dates (RFC 9110 IMF-fixdate): "Thu, 26 Nov 2026 15:00:00 GMT".
std::string httpDate(Seconds t);
std::optional<Seconds> parseHttpDate(std::string_view s);
// The answer to `r` for `feed`: 304 when If-None-Match matches the ETag (or,
// without If-None-Match, If-Modified-Since is not older than Last-Modified),
// else 200; ETag, Last-Modified and Cache-Control: no-cache either way. An
// If-Modified-Since later than `now` is ignored.
HttpResponse conditionalFeed(const HttpRequest& r, const Feed& feed, Seconds now);

// Rendered feeds of the current View, reused until a new View is published:
// polls of an unchanged feed render nothing (a 304 compares one ETag; a full
// answer copies the cached body). Bounded: past max_entries selections the
// cache starts over. Thread-safe.
class FeedCache {
 public:
  explicit FeedCache(size_t max_entries = 4096) : max_(max_entries) {}
  Result<std::shared_ptr<const Feed>> get(const std::shared_ptr<const View>& view,
                                          const std::string& key,
                                          const std::function<Result<Feed>()>& render);
  uint64_t renders() const;

 private:
  const size_t max_;
  mutable std::mutex mu_;
  std::weak_ptr<const View> view_;
  std::map<std::string, std::shared_ptr<const Feed>> feeds_;
  uint64_t renders_ = 0;
};

}  // namespace nsegress::controller
