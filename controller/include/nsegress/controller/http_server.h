// A small HTTP/1.1 server on Boost.Beast: bounded request size, timeouts,
// one response per connection.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>

#include "nsegress/controller/api.h"

namespace nsegress::controller {

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const std::string& method, const std::string& target)>;
  // Listens on host:port (port 0: any free port).
  static Result<std::unique_ptr<HttpServer>> listen(boost::asio::io_context& io,
                                                    const std::string& host, uint16_t port,
                                                    Handler h);
  uint16_t port() const;
  ~HttpServer();

 private:
  struct Impl;
  explicit HttpServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace nsegress::controller
