// The firewall team's read-only web page (GET /ui): the allowlist per pool
// with its feed URLs, what waits on the firewall side (cleanup to
// acknowledge, onboarding), recent audit events, and a who-was-behind search
// (GET /ui?ip=A&at=T). Server-rendered HTML, no JavaScript, no build step;
// every value HTML-escaped; served with a Content-Security-Policy that
// allows no script at all.
#pragma once

#include <string>

#include "nsegress/controller/api.h"

namespace nsegress::controller {

// "&<>\"'" escaped; invalid UTF-8 replaced (U+FFFD).
std::string htmlEscape(const std::string& s);

// The page for `r` (its query may ask who was behind an address). Reads the
// audit log: a slow route.
HttpResponse webPage(const ApiContext& ctx, const HttpRequest& r);

}  // namespace nsegress::controller
