// A small HTTP/1.1 GET over loopback for tests of the metrics endpoint, with
// one deadline over connecting, sending and reading.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sdiff::testing {

struct HttpResponse {
  int status = 0;  // 0: no response (error says why)
  std::string content_type;
  std::string body;
  std::string error;
};

HttpResponse HttpGet(uint16_t port, const std::string& path, std::chrono::milliseconds timeout);

}  // namespace sdiff::testing
