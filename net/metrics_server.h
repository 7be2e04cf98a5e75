// MetricsServer: a minimal HTTP/1.1 server for Prometheus scrapes and status
// pages. It answers GET on each path it was given a route for with whatever
// that route's callback returns (the caller formats it: /metrics, /status)
// and 404 for any other path; it knows nothing of trees or sessions.
//
// One thread, one request per connection (the response closes it), a
// deadline on every read and write, and a small cap on request size: a
// scraper is the only expected client. A failed accept (no file descriptor
// left) is retried after a backoff (net/accept_backoff.h) and logged once, on
// spdlog's default logger.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "engine/status.h"

namespace sdiff::net {

class MetricsServer {
 public:
  // Returns a page's body. Called on the server's thread, once per request.
  using TextFun = std::function<std::string()>;
  struct Route {
    std::string content_type;  // e.g. kPrometheusText, "application/json"
    TextFun body;
  };
  // Path (no query string) -> its page.
  using Routes = std::map<std::string, Route, std::less<>>;

  // The Prometheus text exposition format's Content-Type.
  static constexpr const char* kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

  // Listens on `listen` (HOST:PORT; port 0 lets the OS pick) and serves
  // `routes` until destroyed. Errors: a malformed address, or a failed bind.
  static Status Start(const std::string& listen, Routes routes,
                      std::unique_ptr<MetricsServer>* out);
  // Only GET /metrics, answered with `text` as kPrometheusText.
  static Status Start(const std::string& listen, TextFun text, std::unique_ptr<MetricsServer>* out);
  ~MetricsServer();  // stops accepting, ends open connections, joins the thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const;

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdiff::net
