// HttpGet with Boost.Beast: asynchronous operations run for at most the deadline.
#include "test/support/http_get.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace sdiff::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

HttpResponse HttpGet(uint16_t port, const std::string& path, std::chrono::milliseconds timeout) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  http::request<http::empty_body> request{http::verb::get, path, 11};
  request.set(http::field::host, "127.0.0.1");
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  HttpResponse out;
  auto fail = [&](const char* what, beast::error_code ec) {
    out.error = std::string(what) + ": " + ec.message();
  };
  stream.async_connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
      [&](beast::error_code ec) {
        if (ec) return fail("connect", ec);
        http::async_write(stream, request, [&](beast::error_code ec, size_t) {
          if (ec) return fail("write", ec);
          http::async_read(stream, buffer, response, [&](beast::error_code ec, size_t) {
            if (ec) return fail("read", ec);
            out.status = static_cast<int>(response.result_int());
            out.content_type = std::string(response[http::field::content_type]);
            out.body = response.body();
          });
        });
      });
  io.run();
  return out;
}

}  // namespace sdiff::testing
