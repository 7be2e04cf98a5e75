// The follower's connector, its reconnect loop and the driver that runs a
// ClientSession on each connection.
#include "net/follower_client.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "net/address.h"
#include "net/hmac_authenticator.h"

namespace sdiff::net {
namespace {

const char* ModeName(StartMode mode) {
  switch (mode) {
    case StartMode::kResume:
      return "resuming the stream";
    case StartMode::kDiff:
      return "diffing";
    case StartMode::kBootstrap:
      return "bootstrapping";
    case StartMode::kFiles:
      return "copying files";
  }
  return "?";
}

int64_t UnixNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

class FollowerClient::Driver : public ConnectionHandler,
                               public std::enable_shared_from_this<Driver> {
 public:
  Driver(FollowerClient* client, ClientOptions options, FollowerHooks hooks, FollowerState state)
      : client_(client), session_(std::move(options), std::move(hooks), std::move(state)) {}

  void Attach(const std::shared_ptr<Connection>& c) { connection_ = c; }

  void OnOpen(Connection& c) override {
    opened_ms_ = SteadyNowMs();
    session_.OnTick(opened_ms_);
    session_.Start();
    Pump(c);
  }

  void OnBytes(Connection& c, std::string_view bytes) override {
    bytes_in_ += bytes.size();
    session_.OnBytes(bytes);
    Pump(c);
  }

  void OnTick(Connection& c, int64_t now_ms) override {
    session_.OnTick(now_ms);
    const auto& o = client_->options_;
    if (!session_.streaming() && !session_.closed() &&
        now_ms - opened_ms_ > o.handshake_timeout.count()) {
      session_.Close("handshake not finished within " +
                     std::to_string(o.handshake_timeout.count()) + " ms");
    }
    if (session_.streaming() && o.repair_interval.count() > 0) {
      if (next_repair_ms_ == 0) next_repair_ms_ = now_ms + o.repair_interval.count();
      if (now_ms >= next_repair_ms_) {
        session_.RequestSync();
        next_repair_ms_ = now_ms + o.repair_interval.count();
      }
    }
    Pump(c);
  }

  void OnWritable(Connection& c) override { Pump(c); }

  void OnClose(Connection&, const Status& why) override {
    Status reason = session_.closed() ? session_.error() : why;
    if (client_->stopped_) {  // our own clean stop: nothing to warn about
      client_->log_->info("disconnected from master {}: stopping", client_->options_.master);
    } else {
      client_->log_->warn("disconnected from master {}: {}", client_->options_.master,
                          reason.ToString());
    }
    client_->Update([&](FollowerClientStatus& s) {
      s.connected = false;
      s.last_error = reason.ToString();
    });
    // Only a connection that lasted starts the backoff again: one that ends
    // soon after its handshake (a full disk here, a master that drops us)
    // would otherwise reconnect, and log, many times a second.
    if (welcomed_ms_ != 0 &&
        SteadyNowMs() - welcomed_ms_ >= client_->options_.backoff_max.count()) {
      client_->attempts_ = 0;
    }
    client_->ScheduleReconnect();
  }

  void RequestSync() {
    if (auto c = connection_.lock()) {
      c->Post([self = shared_from_this(), c] {
        self->session_.RequestSync();
        self->Pump(*c);
      });
    }
  }

  void Shutdown() {
    if (auto c = connection_.lock()) {
      c->Post([self = shared_from_this(), c] {
        self->session_.Close("follower stopping");
        self->Pump(*c);
      });
    }
  }

 private:
  void Pump(Connection& c) {
    while (auto event = session_.PollEvent()) {
      switch (event->kind) {
        case ClientEvent::Kind::kWelcome:
          client_->log_->info("connected to master {}: {} (our sequence {}, master's {})",
                              client_->options_.master, ModeName(event->mode),
                              session_.applied_seq(), session_.master_seq());
          welcomed_ms_ = SteadyNowMs();
          client_->Update([&](FollowerClientStatus& s) {
            s.connected = true;
            ++s.connects;
            if (event->mode == StartMode::kBootstrap) ++s.bootstraps;
            s.last_mode = event->mode;
          });
          break;
        case ClientEvent::Kind::kSyncDone:
          if (event->complete) {
            int64_t took = diff_started_ms_ >= 0 ? SteadyNowMs() - diff_started_ms_ : 0;
            diff_started_ms_ = -1;  // an incomplete diff's retry counts with it
            client_->log_->info("diff with master repaired {} keys in {} ms", event->repaired,
                                took);
          }
          client_->Update([&](FollowerClientStatus& s) {
            s.syncs += event->complete ? 1 : 0;
            s.last_repaired = event->repaired;
            if (event->complete) s.last_sync_unix_ms = UnixNowMs();
          });
          break;
        case ClientEvent::Kind::kClosed:
          break;
      }
    }
    if (session_.in_sync() && diff_started_ms_ < 0) diff_started_ms_ = SteadyNowMs();
    std::string out = session_.TakeOutput();
    bytes_out_ += out.size();
    c.Send(std::move(out));
    uint64_t applied = session_.applied_seq(), master = session_.master_seq();
    int64_t lag_ms = session_.lag_ms();
    uint64_t in = std::exchange(bytes_in_, 0), sent = std::exchange(bytes_out_, 0);
    client_->Update([&](FollowerClientStatus& s) {
      s.applied_seq = applied;
      s.master_seq = master;
      s.lag_ms = lag_ms;
      s.bytes_in += in;
      s.bytes_out += sent;
    });
    if (session_.closed() && !c.closing()) c.Close(session_.error(), /*flush=*/true);
  }

  FollowerClient* client_;
  ClientSession session_;
  int64_t welcomed_ms_ = 0;  // strand: when the handshake finished; 0: it did not
  std::weak_ptr<Connection> connection_;
  int64_t opened_ms_ = 0;
  int64_t next_repair_ms_ = 0;
  int64_t diff_started_ms_ = -1;  // when the diff being run began; -1: none
  uint64_t bytes_in_ = 0;         // not yet added to the client's status
  uint64_t bytes_out_ = 0;
};

FollowerClient::FollowerClient(FollowerStore* store, FollowerClientOptions options)
    : store_(store),
      options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      strand_(asio::make_strand(io_)),
      work_(asio::make_work_guard(io_)),
      retry_timer_(strand_),
      jitter_(std::random_device{}()) {
  options_.connection.handshake_timeout = options_.handshake_timeout;
  options_.connection.secret = options_.secret;  // keys the record layer
}

Status FollowerClient::Start(FollowerStore* store, FollowerClientOptions options,
                             std::unique_ptr<FollowerClient>* out) {
  std::unique_ptr<FollowerClient> client(new FollowerClient(store, std::move(options)));
  uint16_t port = 0;
  Status s = ParseHostPort(client->options_.master, &client->host_, &port);
  if (!s.ok()) return s;
  client->port_ = std::to_string(port);
  if (!client->options_.secret.empty()) {
    client->authenticator_ = std::make_unique<HmacAuthenticator>(client->options_.secret);
  }
  if (client->options_.tls.enabled()) {
    s = MakeClientTlsContext(client->options_.tls, &client->tls_);
    if (!s.ok()) return s;
  }
  asio::post(client->strand_, [c = client.get()] { c->Connect(); });
  client->thread_ = std::thread([io = &client->io_] {
    pthread_setname_np(pthread_self(), "sdiff-follower");  // as top -H and perf show it
    io->run();
  });
  *out = std::move(client);
  return Status::OK();
}

FollowerClient::~FollowerClient() { Stop(); }

void FollowerClient::Connect() {
  if (stopped_) return;
  if (!prepared_) {
    Status s = store_->Prepare();
    if (!s.ok()) {
      log_->error("the replica is not ready: {}", s.message());
      Update([&](FollowerClientStatus& st) { st.last_error = s.message(); });
      return ScheduleReconnect();
    }
    prepared_ = true;
  }
  ++attempts_;
  if (attempts_ > 1 || status().connects > 0)
    Update([](FollowerClientStatus& s) { ++s.reconnects; });
  log_->info("connecting to master {} (attempt {})", options_.master, attempts_);
  auto socket = std::make_shared<tcp::socket>(asio::make_strand(io_));
  auto deadline = std::make_shared<asio::steady_timer>(strand_);
  auto looked_up = std::make_shared<bool>(false);  // strand
  auto fail = [this, deadline](const std::string& what) {
    deadline->cancel();
    cancel_attempt_ = nullptr;
    log_->warn("cannot connect to master {}: {}", options_.master, what);
    Update([&](FollowerClientStatus& s) { s.last_error = what; });
    ScheduleReconnect();
  };
  // The lookup runs on a thread of its own (net/lookup.h): one that never
  // returns is abandoned at the deadline like a connect that never completes.
  auto lookup = Lookup::Start(
      strand_, options_.lookup, host_, port_,
      [this, socket, deadline, looked_up, fail](const boost::system::error_code& ec,
                                                tcp::resolver::results_type endpoints) {
        *looked_up = true;
        if (stopped_) return;
        if (ec) return fail("cannot resolve " + host_ + ": " + ec.message());
        asio::async_connect(
            *socket, endpoints,
            asio::bind_executor(strand_, [this, socket, deadline, fail](
                                             const boost::system::error_code& ec,
                                             const tcp::endpoint&) {
              if (stopped_) return;
              if (ec) {
                // The deadline closed the socket.
                if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) {
                  return fail("timed out after " +
                              std::to_string(options_.connect_timeout.count()) + " ms");
                }
                return fail(ec.message());
              }
              deadline->cancel();
              cancel_attempt_ = nullptr;
              boost::system::error_code ignored;
              socket->set_option(tcp::no_delay(true), ignored);
              ClientOptions session = options_.session;
              session.authenticator = authenticator_.get();
              driver_ = std::make_shared<Driver>(this, session, store_->Hooks(), store_->State());
              connection_ = std::make_shared<Connection>(std::move(*socket), tls_.get(), false,
                                                         driver_, options_.connection);
              driver_->Attach(connection_);
              connection_->VerifyServerName(host_);
              connection_->Start();
            }));
      });
  cancel_attempt_ = [lookup, socket, deadline] {
    lookup->Abandon();
    deadline->cancel();
    boost::system::error_code ignored;
    socket->close(ignored);
  };
  deadline->expires_after(options_.connect_timeout);
  deadline->async_wait(
      [this, lookup, socket, looked_up, fail](const boost::system::error_code& ec) {
        if (ec || stopped_) return;  // cancelled: the attempt finished first
        boost::system::error_code ignored;
        socket->close(ignored);  // a connect in progress ends, and fails the attempt
        lookup->Abandon();
        // A lookup still running: its handler will never come, so fail here.
        if (!*looked_up)
          fail("cannot resolve " + host_ + ": timed out after " +
               std::to_string(options_.connect_timeout.count()) + " ms");
      });
}

void FollowerClient::ScheduleReconnect() {
  asio::post(strand_, [this] {
    if (stopped_) return;
    auto base = std::min<int64_t>(options_.backoff_max.count(),
                                  options_.backoff_initial.count()
                                      << std::min(attempts_ > 0 ? attempts_ - 1 : 0, 20));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto delay = std::chrono::milliseconds(static_cast<int64_t>(base * jitter(jitter_)));
    retry_timer_.expires_after(delay);
    retry_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) Connect();
    });
  });
}

void FollowerClient::Stop() {
  if (stopped_.exchange(true)) return;
  asio::post(strand_, [this] {
    retry_timer_.cancel();
    if (cancel_attempt_) cancel_attempt_();
    if (driver_) driver_->Shutdown();
  });
  work_.reset();
  if (thread_.joinable()) thread_.join();
}

void FollowerClient::RequestSync() {
  asio::post(strand_, [this] {
    if (driver_) driver_->RequestSync();
  });
}

void FollowerClient::Update(const std::function<void(FollowerClientStatus&)>& fn) {
  MutexLock lock(&mu_);
  fn(status_);
  changed_.SignalAll();
}

FollowerClientStatus FollowerClient::status() const {
  MutexLock lock(&mu_);
  return status_;
}

bool FollowerClient::WaitFor(const std::function<bool(const FollowerClientStatus&)>& pred,
                             std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!pred(status_)) {
    if (!changed_.WaitUntil(deadline)) return pred(status_);
  }
  return true;
}

}  // namespace sdiff::net
