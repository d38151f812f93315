// The controller's names for the HTTP seam (nsegress/http): its API, feeds
// and web page are routes over these types.
#pragma once

#include "nsegress/http/http.h"
#include "nsegress/http/server.h"

namespace nsegress::controller {
using http::Handler;
using http::Headers;
using http::HttpRequest;
using http::HttpResponse;
using http::jsonError;
using http::Router;
using HttpServer = http::Server;
using HttpServerOptions = http::ServerOptions;
}  // namespace nsegress::controller
