// RunClientSession: look up and connect within a deadline, then pump one
// ClientProtocol over a Connection on an io_context that runs in the caller's
// thread until the connection closes.
#include "net/session_runner.h"

#include <algorithm>
#include <memory>

#include "net/address.h"

namespace sdiff::net {
namespace {

class RunnerHandler : public ConnectionHandler {
 public:
  RunnerHandler(ClientProtocol* protocol, asio::io_context* io, int64_t deadline_ms)
      : protocol_(protocol), io_(io), deadline_ms_(deadline_ms) {}

  void OnOpen(Connection& c) override {
    protocol_->OnTick(SteadyNowMs());
    protocol_->Start();
    Pump(c);
  }
  void OnBytes(Connection& c, std::string_view bytes) override {
    protocol_->OnBytes(bytes);
    Pump(c);
  }
  void OnTick(Connection& c, int64_t now_ms) override {
    protocol_->OnTick(now_ms);
    if (deadline_ms_ > 0 && now_ms > deadline_ms_ && !c.closing()) {
      timed_out_ = true;
      c.Close(Status::IOError("the master did not finish in time"), /*flush=*/false);
      return;
    }
    Pump(c);
  }
  void OnWritable(Connection& c) override { Pump(c); }
  void OnClose(Connection&, const Status& why) override {
    closed_why_ = why;
    io_->stop();
  }

  bool timed_out() const { return timed_out_; }
  const Status& closed_why() const { return closed_why_; }

 private:
  void Pump(Connection& c) {
    std::string out = protocol_->TakeOutput();
    if (!out.empty()) c.Send(std::move(out));
    if (protocol_->finished() && !c.closing()) c.Close(Status::OK(), /*flush=*/true);
  }

  ClientProtocol* protocol_;
  asio::io_context* io_;
  int64_t deadline_ms_;
  bool timed_out_ = false;
  Status closed_why_;
};

}  // namespace

Status RunClientSession(const ClientRunOptions& options, ClientProtocol* protocol,
                        std::string_view secret) {
  std::string host;
  uint16_t port = 0;
  Status s = ParseHostPort(options.master, &host, &port);
  if (!s.ok()) return s;
  std::unique_ptr<asio::ssl::context> tls;
  if (options.tls.enabled()) {
    s = MakeClientTlsContext(options.tls, &tls);
    if (!s.ok()) return s;
  }

  const int64_t start_ms = SteadyNowMs();
  asio::io_context io;
  auto strand = asio::make_strand(io);
  tcp::socket socket(strand);
  boost::system::error_code ec;

  // The lookup and the connect race one timer on the io_context: connect_timeout,
  // or the whole call's deadline if that is sooner. The lookup runs on its own
  // thread (net/lookup.h), so a name server that never answers cannot hold us.
  std::chrono::milliseconds limit = options.connect_timeout;
  if (options.deadline.count() > 0) limit = std::min(limit, options.deadline);
  boost::system::error_code lookup_ec;
  boost::system::error_code connect_ec = asio::error::would_block;
  bool looked_up = false;
  bool timed_out = false;
  asio::steady_timer timer(io);
  std::shared_ptr<Lookup> lookup = Lookup::Start(
      io.get_executor(), options.lookup, host, std::to_string(port),
      [&](const boost::system::error_code& e, tcp::resolver::results_type endpoints) {
        looked_up = true;
        if (e) {
          lookup_ec = e;
          timer.cancel();
          return;
        }
        asio::async_connect(socket, endpoints,
                            [&](const boost::system::error_code& e, const tcp::endpoint&) {
                              connect_ec = e;
                              timer.cancel();
                            });
      });
  timer.expires_after(limit);
  timer.async_wait([&](const boost::system::error_code& e) {
    // Both may be ready in one poll: a lookup failed or a connection made
    // first is kept (the timer's cancel came too late to stop this handler).
    if (e || lookup_ec || connect_ec != asio::error::would_block) return;
    timed_out = true;
    lookup->Abandon();
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  io.run();
  lookup->Abandon();  // before io goes; its handler has run or never will
  io.restart();
  if (timed_out) {
    std::string after = "timed out after " + std::to_string(limit.count()) + " ms";
    if (!looked_up) return Status::IOError("cannot resolve " + host + ": " + after);
    return Status::IOError("cannot connect to " + options.master + ": " + after);
  }
  if (lookup_ec) return Status::IOError("cannot resolve " + host + ": " + lookup_ec.message());
  if (connect_ec) {
    return Status::IOError("cannot connect to " + options.master + ": " + connect_ec.message());
  }
  socket.set_option(tcp::no_delay(true), ec);

  int64_t deadline_ms = options.deadline.count() > 0 ? start_ms + options.deadline.count() : 0;
  auto handler = std::make_shared<RunnerHandler>(protocol, &io, deadline_ms);
  ConnectionOptions connection = options.connection;
  connection.secret = std::string(secret);  // keys the record layer
  auto c = std::make_shared<Connection>(std::move(socket), tls.get(), /*server_side=*/false,
                                        handler, connection);
  c->VerifyServerName(host);
  c->Start();
  c.reset();
  io.run();

  if (!protocol->error().ok()) return protocol->error();
  if (protocol->finished()) return Status::OK();
  if (handler->timed_out()) {
    return Status::IOError("the master did not finish within " +
                           std::to_string(options.deadline.count()) + " ms");
  }
  const Status& why = handler->closed_why();
  return Status::IOError("connection to " + options.master + " ended: " +
                         (why.ok() ? std::string("closed by the master") : why.ToString()));
}

}  // namespace sdiff::net
