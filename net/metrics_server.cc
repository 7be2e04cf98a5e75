// The metrics endpoint: Boost.Beast on one io_context thread.
#include "net/metrics_server.h"

#include <pthread.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <spdlog/spdlog.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>

#include "net/accept_backoff.h"
#include "net/address.h"

namespace sdiff::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::chrono::seconds kIoTimeout{10};  // to read the request, then to write the answer
constexpr uint32_t kMaxRequestBytes = 8192;     // headers and body together, well above a scrape

// One request and its response, then the connection closes.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(tcp::socket socket, const MetricsServer::Routes* routes)
      : stream_(std::move(socket)), routes_(routes) {
    parser_.header_limit(kMaxRequestBytes);
    parser_.body_limit(kMaxRequestBytes);
  }

  void Start() {
    stream_.expires_after(kIoTimeout);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->Close();  // a timeout, a bad or oversize request
                       self->Answer();
                     });
  }

 private:
  void Answer() {
    const auto& request = parser_.get();
    std::string_view target(request.target().data(), request.target().size());
    std::string_view path = target.substr(0, target.find('?'));
    response_.version(request.version());
    response_.keep_alive(false);
    response_.set(http::field::server, "sdiff");
    response_.set(http::field::content_type, "text/plain; charset=utf-8");
    auto route = routes_->find(path);
    if (route == routes_->end()) {
      response_.result(http::status::not_found);
      response_.body() = "not found; try";
      for (const auto& [known, unused] : *routes_) response_.body() += " " + known;
      response_.body() += "\n";
    } else if (request.method() != http::verb::get) {
      response_.result(http::status::method_not_allowed);
      response_.set(http::field::allow, "GET");
      response_.body() = "only GET\n";
    } else {
      response_.result(http::status::ok);
      response_.set(http::field::content_type, route->second.content_type);
      response_.body() = route->second.body();
    }
    response_.prepare_payload();
    stream_.expires_after(kIoTimeout);
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code, size_t) { self->Close(); });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  const MetricsServer::Routes* routes_;  // owned by the server, which outlives every exchange
  beast::flat_buffer buffer_{kMaxRequestBytes};
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> response_;
};

}  // namespace

struct MetricsServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer accept_retry{io};  // the wait after a failed accept
  AcceptBackoff backoff;
  Routes routes;  // constant once the thread runs
  std::thread thread;

  void Accept() {
    acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors (EMFILE) and the like: the scrape stays queued,
        // so accepting again at once would fail at once, forever.
        bool first = false;
        accept_retry.expires_after(backoff.Failed(&first));
        if (first) spdlog::warn("metrics: accept failed: {}; retrying with backoff", ec.message());
        accept_retry.async_wait([this](const boost::system::error_code& e) {
          if (!e) Accept();
        });
        return;
      }
      if (uint64_t failed = backoff.Succeeded()) {
        spdlog::info("metrics: accepting again after {} failed accepts", failed);
      }
      std::make_shared<Exchange>(std::move(socket), &routes)->Start();
      Accept();
    });
  }

  // Pending exchanges are dropped with the io_context, after the thread ends.
  ~Impl() {
    io.stop();
    if (thread.joinable()) thread.join();
  }
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() = default;

uint16_t MetricsServer::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

Status MetricsServer::Start(const std::string& listen, TextFun text,
                            std::unique_ptr<MetricsServer>* out) {
  return Start(listen, Routes{{"/metrics", Route{kPrometheusText, std::move(text)}}}, out);
}

Status MetricsServer::Start(const std::string& listen, Routes routes,
                            std::unique_ptr<MetricsServer>* out) {
  std::string host;
  uint16_t port = 0;
  Status s = ParseHostPort(listen, &host, &port);
  if (!s.ok()) return s;
  auto impl = std::make_unique<Impl>();
  impl->routes = std::move(routes);
  boost::system::error_code ec;
  tcp::resolver resolver(impl->io);
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec || endpoints.empty()) {
    return Status::InvalidArgument("cannot resolve metrics address " + listen + ": " +
                                   ec.message());
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("cannot serve metrics on " + listen + ": " + ec.message());
  impl->Accept();
  impl->thread = std::thread([io = &impl->io] {
    pthread_setname_np(pthread_self(), "sdiff-metrics");
    io->run();
  });
  out->reset(new MetricsServer(std::move(impl)));
  return Status::OK();
}

}  // namespace sdiff::net
