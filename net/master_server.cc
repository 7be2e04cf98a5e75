// The master's listener and the driver that runs a ServerSession on a connection.
#include "net/master_server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "engine/roles.h"
#include "engine/wire.h"
#include "net/address.h"
#include "net/hmac_authenticator.h"

namespace sdiff::net {
namespace {

// Answers a connection the server does not take (beyond max_connections, or
// while the hub is unavailable) with Reject{kOverload}: come back later.
class RefuseHandler : public ConnectionHandler {
 public:
  explicit RefuseHandler(std::string reason) : reason_(std::move(reason)) {}
  void OnOpen(Connection& c) override {
    std::string frame;
    wire::AppendFrame(Reject{RejectCode::kOverload, reason_}, &frame);
    c.Send(std::move(frame));
    c.Close(Status::Aborted(reason_), /*flush=*/true);
  }
  void OnBytes(Connection&, std::string_view) override {}
  void OnTick(Connection&, int64_t) override {}
  void OnWritable(Connection&) override {}
  void OnClose(Connection&, const Status&) override {}

 private:
  std::string reason_;
};

}  // namespace

// One follower's session. Handler calls and posted work run on the
// connection's strand; OnBatch/OnSnapshot come from the hub's thread and post.
class MasterServer::Driver : public ConnectionHandler,
                             public BatchSink,
                             public std::enable_shared_from_this<Driver> {
 public:
  Driver(MasterServer* server, ServerOptions options, MasterHooks hooks)
      : server_(server),
        hooks_(hooks),
        db_(asio::make_strand(server->db_)),
        session_(std::move(options), std::move(hooks)) {}

  void Attach(const std::shared_ptr<Connection>& connection) {
    connection_ = connection;
    peer_ = connection->peer();
  }

  // From any thread.
  SessionStats Stats(uint64_t master_seq) const {
    SessionStats s;
    s.peer = peer_;
    s.role = static_cast<Role>(role_.load(std::memory_order_relaxed));
    s.streaming = streaming_.load(std::memory_order_relaxed);
    s.applied_seq = applied_seq_.load(std::memory_order_relaxed);
    s.acked_seq = acked_seq_.load(std::memory_order_relaxed);
    s.lag_seqs = s.applied_seq > 0 && master_seq > s.applied_seq ? master_seq - s.applied_seq : 0;
    s.lag_ms = lag_ms_.load(std::memory_order_relaxed);
    s.input_buffer_bytes = input_buffer_bytes_.load(std::memory_order_relaxed);
    return s;
  }

  void OnOpen(Connection& c) override {
    opened_ms_ = SteadyNowMs();
    session_.OnTick(opened_ms_);
    Pump(c);
    NoteInputBuffers(c);
  }

  void OnBytes(Connection& c, std::string_view bytes) override {
    server_->counters_.bytes_in.fetch_add(bytes.size(), std::memory_order_relaxed);
    session_.OnBytes(bytes);
    NoteApplied();
    Pump(c);
    NoteInputBuffers(c);
  }

  void OnTick(Connection& c, int64_t now_ms) override {
    session_.OnTick(now_ms);
    if (ack_wait_ != 0 && now_ms >= ack_deadline_ms_) {
      // The deadline passed before enough followers applied the write.
      StopWaitingForAcks();
      session_.OnAcks(false);
    }
    if (!session_.streaming() && !session_.closed() &&
        now_ms - opened_ms_ > server_->options_.handshake_timeout.count()) {
      dropped_ = true;
      session_.Close("handshake not finished within " +
                         std::to_string(server_->options_.handshake_timeout.count()) + " ms",
                     RejectCode::kProtocol);
    }
    Pump(c);
  }

  void OnWritable(Connection& c) override { Pump(c); }

  void OnClose(Connection& c, const Status& why) override {
    server_->hub_->Unsubscribe(this);
    server_->acks_.Remove(this);
    StopWaitingForAcks();
    // A follower that stopped reading is dropped by a limit, like one whose
    // backlog passed the mark.
    if (c.peer_stalled()) dropped_ = true;
    // The session's own reason is the better one when it ended things.
    Status reason = session_.closed() ? session_.error() : why;
    // Aborted is the master's own choice (shutdown) unless a limit dropped it;
    // a peer that never finished its handshake was refused, whoever hung up.
    bool finished = SessionFinished();
    bool refused = !finished && (dropped_ || (session_.closed() && !session_.error().IsAborted()) ||
                                 (!handshaken_ && !server_->stopped_));
    auto& log = server_->log_;
    // A peer that closed its session itself (a follower stopping) or our
    // own shutdown: an ordinary end, not a warning.
    bool ordinary = !refused && reason.IsAborted();
    if (finished) {
      log->info("{} {} done", RoleName(session_.peer_role()), c.peer());
    } else if (ordinary) {
      log->info("{} {} closed: {}", RoleName(session_.peer_role()), c.peer(), reason.ToString());
    } else if (refused || !session_.streaming()) {
      log->warn("closed connection from {}: {}", c.peer(), reason.ToString());
    } else {
      log->info("{} {} disconnected: {}", RoleName(session_.peer_role()), c.peer(),
                reason.ToString());
    }
    server_->Forget(this, reason, refused);
  }

  void OnBatches(std::vector<StreamBatch> batches) override {
    auto c = connection_.lock();
    if (!c) return;
    std::vector<Handoff> handoffs;
    handoffs.reserve(batches.size());
    size_t bytes = 0;
    // A batch counts for at most a quarter of the mark: one large write
    // waits for the link (the session holds it shared, not copied, and
    // encodes it a frame at a time); only many writes waiting drop a follower.
    const size_t cap = std::max<size_t>(server_->options_.connection.high_water_bytes / 4, 1);
    for (StreamBatch& b : batches) {
      size_t n = std::min(BatchBytes(*b.batch), cap);
      bytes += n;
      handoffs.push_back(Handoff{std::move(b.batch), std::move(b.frame), n, std::nullopt});
    }
    size_t backlog = backlog_.fetch_add(bytes) + bytes;
    if (backlog > server_->options_.connection.high_water_bytes) {
      dropped_ = true;
      c->Close(Status::Aborted("follower too slow: " + std::to_string(backlog) +
                               " bytes of stream waiting, limit " +
                               std::to_string(server_->options_.connection.high_water_bytes)),
               /*flush=*/false);
      return;
    }
    Enqueue(c, std::move(handoffs));
  }

  void OnSnapshot(TreeView snapshot, uint64_t seq) override {
    auto c = connection_.lock();
    if (!c) return;
    std::vector<Handoff> handoff;
    handoff.push_back(Handoff{nullptr, nullptr, 0, std::move(snapshot), seq});
    Enqueue(c, std::move(handoff));
  }

  // From any thread.
  void RequestCorrection() {
    if (auto c = connection_.lock()) {
      c->Post([self = shared_from_this(), c] {
        self->session_.RequestCorrection();
        self->Pump(*c);
      });
    }
  }

  void Shutdown(std::string reason = "master shutting down") {
    if (auto c = connection_.lock()) {
      c->Post([self = shared_from_this(), c, reason = std::move(reason)] {
        self->session_.Close(reason);
        self->Pump(*c);
      });
    }
  }

 private:
  // Does what the session asked for, then moves its output to the socket.
  void Pump(Connection& c) {
    while (auto event = session_.PollEvent()) {
      switch (event->kind) {
        case ServerEvent::Kind::kStreamFrom:
          server_->log_->info("follower {} streaming from sequence {}", c.peer(), event->seq);
          server_->hub_->Subscribe(shared_from_this(), event->seq);
          break;
        case ServerEvent::Kind::kWantSnapshot:
          server_->hub_->RequestSnapshot(shared_from_this(), event->seq);
          break;
        case ServerEvent::Kind::kSyncDone: {
          server_->log_->info("diff with {}: {} keys repaired{}", c.peer(), event->repaired,
                              event->complete ? "" : " (incomplete, diffing again)");
          if (event->complete) {
            auto& counters = server_->counters_;
            counters.syncs.fetch_add(1, std::memory_order_relaxed);
            counters.last_sync_repaired.store(event->repaired, std::memory_order_relaxed);
            counters.last_sync_unix_ms.store(
                std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count(),
                std::memory_order_relaxed);
          }
          server_->counters_.keys_repaired.fetch_add(event->repaired, std::memory_order_relaxed);
          break;
        }
        case ServerEvent::Kind::kRunAudit:
          RunAudit();
          break;
        case ServerEvent::Kind::kWaitAcks:
          WaitForAcks(event->seq);
          break;
        case ServerEvent::Kind::kClosed:
          break;
      }
    }
    // Output is taken only while the queue is short: TakeOutput encodes the
    // stream and makes the next bulk frame, about bulk_frame_bytes a call, and
    // taking it on every batch or tick would outrun a slow reader. Stream
    // batches left in the session meanwhile stay counted in backlog_, which
    // OnBatches bounds by the high-water mark; OnWritable pumps again once the
    // queue drains.
    uint64_t sent = 0;
    const size_t low_water = server_->options_.connection.low_water_bytes;
    if (!session_.streaming() || c.queued_bytes() < low_water) {
      do {
        std::string out = session_.TakeOutput();
        if (out.empty()) break;
        sent += out.size();
        c.Send(std::move(out));
      } while (session_.wants_write() && c.queued_bytes() < low_water && !c.closing());
    }
    // Batches the session has wholly encoded no longer count (it encodes in order).
    while (held_.size() > session_.batches_held()) {
      backlog_ -= held_.front();
      held_.pop_front();
    }
    if (sent != 0) server_->counters_.bytes_out.fetch_add(sent, std::memory_order_relaxed);
    // A small copy can be sent whole, and its session closed, in one pump.
    if (!handshaken_ && (session_.streaming() || SessionFinished())) {
      handshaken_ = true;
      role_.store(static_cast<uint8_t>(session_.peer_role()), std::memory_order_relaxed);
      if (!RulesFor(session_.peer_role()).streams) {
        server_->log_->info("{} {} connected", RoleName(session_.peer_role()), c.peer());
      }
      streaming_.store(true, std::memory_order_relaxed);
      // Authenticated: reads may now be as large as the server's own limit.
      c.set_read_bytes(server_->options_.connection.read_bytes);
    }
    if (std::optional<DbRequest> request = session_.PollDbRequest()) Serve(std::move(*request));
    c.set_reading_paused(!session_.wants_input());
    if (session_.closed() && !c.closing()) c.Close(session_.error(), /*flush=*/true);
  }

  // Strand. The session's database work runs on this driver's strand of the
  // database workers, so a slow read, scan or fsync holds no io_context
  // thread (and no other session); the answer comes back to this strand.
  void Serve(DbRequest request) {
    std::weak_ptr<Connection> weak = connection_;
    asio::post(db_, [self = shared_from_this(), weak, request = std::move(request)]() mutable {
      if (weak.expired()) return;  // the peer left before its turn
      DbAnswer answer = ServeDbRequest(self->hooks_, std::move(request));
      auto c = weak.lock();
      if (!c) return;
      c->Post([self, c, answer = std::move(answer)]() mutable {
        self->session_.OnDbAnswer(std::move(answer));
        self->Pump(*c);
      });
    });
  }

  // Strand. An audit scans the whole database (seconds at a million keys):
  // it runs on the server's blocking worker, never on an io_context thread,
  // and its outcome comes back to this strand.
  void RunAudit() {
    std::weak_ptr<Connection> weak = connection_;
    asio::post(server_->blocking_, [self = shared_from_this(), weak] {
      AuditReport report;
      Status s = self->hooks_.audit(&report);
      auto c = weak.lock();
      if (!c) return;  // the auditor left; the audit's work stands all the same
      c->Post([self, c, s = std::move(s), report = std::move(report)]() mutable {
        self->session_.OnAuditDone(s, std::move(report));
        self->Pump(*c);
      });
    });
  }

  // Strand. A writer's write committed at `seq` waits for min_acks
  // followers: the tracker calls back when the followers' reports reach it
  // (posted to this strand), OnTick gives up at the deadline; no thread
  // waits. A callback for a wait already given up finds another ack_wait_.
  void WaitForAcks(uint64_t seq) {
    std::weak_ptr<Connection> weak = connection_;
    const uint64_t id = ++ack_waits_;
    ack_wait_ = id;
    ack_deadline_ms_ = SteadyNowMs() + server_->options_.ack_timeout.count();
    ack_ticket_ = server_->acks_.OnReached(seq, server_->options_.min_acks,
                                           [self = shared_from_this(), weak, id] {
                                             auto c = weak.lock();
                                             if (!c) return;
                                             c->Post([self, c, id] {
                                               if (self->ack_wait_ != id) return;
                                               self->ack_wait_ = 0;
                                               self->ack_ticket_ = 0;
                                               self->session_.OnAcks(true);
                                               self->Pump(*c);
                                             });
                                           });
  }

  // Strand. Ends the wait for acks, if any.
  void StopWaitingForAcks() {
    if (ack_ticket_ != 0) server_->acks_.Cancel(ack_ticket_);
    ack_ticket_ = 0;
    ack_wait_ = 0;
  }

  // Strand. The session ended itself without error: it did its job (a
  // cloner that was sent all its files, an auditor its report).
  bool SessionFinished() const { return session_.closed() && session_.error().ok(); }

  // Strand. When the stream handed batches to the session, coalesced per
  // millisecond, so the follower's lag can be told in time from its position.
  void NoteHanded(uint64_t last, int64_t now) {
    if (!RulesFor(session_.peer_role()).streams) return;  // streamed nothing, reports nothing
    if (!handed_.empty() && handed_.back().ms == now) {
      handed_.back().last_seq = last;
    } else {
      handed_.push_back({last, now});
    }
  }

  // Strand: what the peer's unread input holds, for stats().
  void NoteInputBuffers(const Connection& c) {
    input_buffer_bytes_.store(c.read_buffer_bytes() + session_.input_buffer_bytes(),
                              std::memory_order_relaxed);
  }

  // Strand, after bytes from the follower (its Pongs carry its position).
  void NoteApplied() {
    uint64_t applied = session_.follower_applied_seq();
    if (applied == 0) return;  // no Pong yet
    uint64_t acked = session_.acked_seq();
    if (acked != acked_seq_.load(std::memory_order_relaxed)) {
      acked_seq_.store(acked, std::memory_order_relaxed);
      server_->acks_.Set(this, acked);
    }
    while (!handed_.empty() && handed_.front().last_seq <= applied) handed_.pop_front();
    applied_seq_.store(applied, std::memory_order_relaxed);
    lag_ms_.store(handed_.empty() ? 0 : SteadyNowMs() - handed_.front().ms,
                  std::memory_order_relaxed);
  }

  struct Handed {
    uint64_t last_seq;  // last sequence handed during millisecond `ms`
    int64_t ms;
  };

  // A batch, or a snapshot taken after the batches queued before it.
  struct Handoff {
    std::shared_ptr<const Batch> batch;
    std::shared_ptr<const std::string> frame;  // encoded once for every session, or null
    size_t bytes = 0;
    std::optional<TreeView> snapshot;
    uint64_t snapshot_seq = 0;
  };

  // From the hub's thread, a group at a time. One post to the strand carries
  // every hand-off queued until the strand takes them, so a fast stream costs
  // one wake-up and one Pump per group of batches rather than per batch.
  void Enqueue(const std::shared_ptr<Connection>& c, std::vector<Handoff> group) {
    bool post;
    {
      MutexLock lock(&handoff_mu_);
      if (handoffs_.empty()) {
        handoffs_ = std::move(group);
      } else {
        std::move(group.begin(), group.end(), std::back_inserter(handoffs_));
      }
      post = !std::exchange(handoff_posted_, true);
    }
    if (post) c->Post([self = shared_from_this(), c] { self->TakeHandoffs(*c); });
  }

  // Strand: gives the session what the hub queued, in order, then pumps once.
  void TakeHandoffs(Connection& c) {
    std::vector<Handoff> handoffs;
    {
      MutexLock lock(&handoff_mu_);
      handoffs.swap(handoffs_);
      handoff_posted_ = false;
    }
    const int64_t now = SteadyNowMs();  // one clock read for the group
    for (Handoff& h : handoffs) {
      if (h.batch) {
        const uint64_t last = LastSeq(*h.batch);
        // Still counted in backlog_ until the session has encoded it.
        if (session_.OnBatch(std::move(h.batch), std::move(h.frame))) {
          held_.push_back(h.bytes);
        } else {
          backlog_ -= h.bytes;
        }
        NoteHanded(last, now);
      } else {
        session_.StartSync(std::move(*h.snapshot), h.snapshot_seq);
      }
    }
    Pump(c);
  }

  MasterServer* server_;
  // The session's hooks, for the work it asks of the database workers and
  // the blocking worker (audits); their getters are the session's own.
  const MasterHooks hooks_;
  asio::strand<asio::thread_pool::executor_type> db_;
  ServerSession session_;
  std::weak_ptr<Connection> connection_;
  std::string peer_;  // constant after Attach
  Mutex handoff_mu_;
  std::vector<Handoff> handoffs_ GUARDED_BY(handoff_mu_);
  bool handoff_posted_ GUARDED_BY(handoff_mu_) = false;  // a TakeHandoffs is on its way
  std::atomic<size_t> backlog_{0};  // bytes of batches posted, not yet encoded by the session
  std::deque<size_t> held_;         // strand: of which the session holds, oldest first
  int64_t opened_ms_ = 0;
  bool handshaken_ = false;  // strand: the session reached streaming
  // Set when a limit (handshake time, backlog) ends the connection; from any thread.
  std::atomic<bool> dropped_{false};
  // Unapplied batches handed to the session (strand). Bounded by the
  // follower's lag in milliseconds until its idle timeout closes it.
  std::deque<Handed> handed_;
  // Read by stats() from any thread.
  std::atomic<uint8_t> role_{static_cast<uint8_t>(Role::kFollower)};
  std::atomic<bool> streaming_{false};
  std::atomic<uint64_t> applied_seq_{0};
  std::atomic<uint64_t> acked_seq_{0};  // written on the strand only
  // A write's wait for acks (strand): its id (0: none), the tracker's ticket
  // (0: none pending there), the deadline (steady ms).
  uint64_t ack_waits_ = 0;
  uint64_t ack_wait_ = 0;
  uint64_t ack_ticket_ = 0;
  int64_t ack_deadline_ms_ = 0;
  std::atomic<int64_t> lag_ms_{0};
  std::atomic<size_t> input_buffer_bytes_{0};
};

MasterServer::MasterServer(MasterHub* hub, MasterServerOptions options)
    : hub_(hub),
      options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      work_(asio::make_work_guard(io_)),
      db_(static_cast<size_t>(std::max(1, options_.db_threads))),
      acceptor_(asio::make_strand(io_)),
      accept_retry_(acceptor_.get_executor()) {
  options_.connection.handshake_timeout = options_.handshake_timeout;
  options_.connection.secret = options_.secret;  // keys the record layer
  // Until a peer authenticates, reads are no larger than the frames it may send.
  handshake_connection_ = options_.connection;
  handshake_connection_.read_bytes =
      std::min(options_.connection.read_bytes, wire::kMaxHandshakeFrame);
}

Status MasterServer::Start(MasterHub* hub, MasterServerOptions options,
                           std::unique_ptr<MasterServer>* out) {
  std::unique_ptr<MasterServer> server(new MasterServer(hub, std::move(options)));
  const MasterServerOptions& o = server->options_;
  std::string host;
  uint16_t port = 0;
  Status s = ParseHostPort(o.listen, &host, &port);
  if (!s.ok()) return s;

  boost::system::error_code ec;
  tcp::resolver resolver(server->io_);
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec || endpoints.empty()) {
    return Status::InvalidArgument("cannot resolve listen address " + o.listen + ": " +
                                   ec.message());
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  if (o.secret.empty() && !endpoint.address().is_loopback() && !o.allow_unauthenticated_remote) {
    return Status::InvalidArgument("refusing to listen on " + o.listen +
                                   " without a shared secret: any host could follow this "
                                   "master; give a secret file, or listen on loopback");
  }
  if (!o.secret.empty()) server->authenticator_ = std::make_unique<HmacAuthenticator>(o.secret);
  server->current_seq_ = hub->SessionHooks().current_seq;
  if (o.tls.enabled()) {
    s = MakeServerTlsContext(o.tls, &server->tls_);
    if (!s.ok()) return s;
  }

  server->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) server->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) server->acceptor_.bind(endpoint, ec);
  if (!ec) server->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("cannot listen on " + o.listen + ": " + ec.message());
  server->port_ = server->acceptor_.local_endpoint().port();

  server->log_->info("master listening on {}:{}{}{}", endpoint.address().to_string(), server->port_,
                     o.tls.enabled() ? " with TLS" : "",
                     o.secret.empty() ? "; no shared secret: any local process can follow"
                                      : "; followers must prove the shared secret");
  server->Accept();
  asio::post(server->blocking_, [] { pthread_setname_np(pthread_self(), "sdiff-blocking"); });
  for (int i = 0; i < std::max(1, o.db_threads); ++i) {
    // Not a guarantee each thread takes one (a thread may take two): a name only.
    asio::post(server->db_, [] { pthread_setname_np(pthread_self(), "sdiff-db"); });
  }
  for (int i = 0; i < std::max(1, o.threads); ++i) {
    server->threads_.emplace_back([io = &server->io_] {
      pthread_setname_np(pthread_self(), "sdiff-master");  // as top -H and perf show it
      io->run();
    });
  }
  *out = std::move(server);
  return Status::OK();
}

MasterServer::~MasterServer() { Stop(); }

void MasterServer::Accept() {
  acceptor_.async_accept(
      asio::make_strand(io_), [this](const boost::system::error_code& ec, tcp::socket socket) {
        if (ec) {
          if (stopped_ || ec == asio::error::operation_aborted) return;
          // Out of descriptors (EMFILE) and the like: the connection stays
          // queued, so accepting again at once would fail at once, forever.
          bool first = false;
          auto delay = accept_backoff_.Failed(&first);
          if (first) log_->warn("accept failed: {}; retrying with backoff", ec.message());
          accept_retry_.expires_after(delay);
          accept_retry_.async_wait([this](const boost::system::error_code& e) {
            if (!e && !stopped_) Accept();
          });
          return;
        }
        if (uint64_t failed = accept_backoff_.Succeeded()) {
          log_->info("accepting again after {} failed accepts", failed);
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::shared_ptr<Connection> connection;
        std::string reason = hub_->Unavailable();  // outside mu_: the hub has its own lock
        if (reason.empty()) {
          // A driver is wired to its connection before Stop or RequestSyncAll
          // can see it, and none is added once Stop has taken its copy.
          MutexLock lock(&mu_);
          if (stopped_) return;
          if (drivers_.size() >= options_.max_connections) {
            reason = "too many connections (max " + std::to_string(options_.max_connections) + ")";
          } else {
            ServerOptions session = hub_->SessionOptions();
            session.authenticator = authenticator_.get();
            session.ping_interval_ms = options_.ping_interval_ms;
            session.idle_timeout_ms = options_.idle_timeout_ms;
            session.bulk_frame_bytes = options_.bulk_frame_bytes;
            session.min_acks = options_.min_acks;
            auto driver = std::make_shared<Driver>(this, std::move(session), hub_->SessionHooks());
            connection = std::make_shared<Connection>(std::move(socket), tls_.get(), true, driver,
                                                      handshake_connection_);
            driver->Attach(connection);
            drivers_.insert(driver);
            counters_.accepted.fetch_add(1, std::memory_order_relaxed);
          }
        }
        if (connection) {
          connection->Start();
        } else {
          counters_.rejected.fetch_add(1, std::memory_order_relaxed);
          auto connection = std::make_shared<Connection>(std::move(socket), tls_.get(), true,
                                                         std::make_shared<RefuseHandler>(reason),
                                                         handshake_connection_);
          log_->warn("refusing connection from {}: {}", connection->peer(), reason);
          connection->Start();
        }
        Accept();
      });
}

void MasterServer::Forget(Driver* driver, const Status&, bool counts_as_rejected) {
  MutexLock lock(&mu_);
  for (auto it = drivers_.begin(); it != drivers_.end(); ++it) {
    if (it->get() == driver) {
      drivers_.erase(it);
      break;
    }
  }
  if (counts_as_rejected) counters_.rejected.fetch_add(1, std::memory_order_relaxed);
}

void MasterServer::Stop() {
  std::set<std::shared_ptr<Driver>> drivers;
  {
    MutexLock lock(&mu_);  // see Accept: no driver is added after this copy
    if (stopped_.exchange(true)) return;
    drivers = drivers_;
  }
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    accept_retry_.cancel();
    acceptor_.close(ignored);
  });
  for (const auto& d : drivers) d->Shutdown();
  // Audits not started are dropped (their sessions are closing); one under
  // way finishes first, while the io_context still runs to take its report.
  blocking_.stop();
  blocking_.join();
  // Work not started is dropped; a read or write under way finishes, and its
  // answer finds its session closing.
  db_.stop();
  db_.join();
  work_.reset();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  MutexLock lock(&mu_);
  drivers_.clear();
}

void MasterServer::DisconnectAll(const std::string& reason) {
  std::set<std::shared_ptr<Driver>> drivers;
  {
    MutexLock lock(&mu_);
    drivers = drivers_;
  }
  for (const auto& d : drivers) d->Shutdown(reason);
}

void MasterServer::RequestSyncAll() {
  std::set<std::shared_ptr<Driver>> drivers;
  {
    MutexLock lock(&mu_);
    drivers = drivers_;
  }
  for (const auto& d : drivers) d->RequestCorrection();
}

MasterServerStats MasterServer::stats() const {
  MasterServerStats s;
  s.master_seq = current_seq_ ? current_seq_() : 0;  // outside mu_: the hub has its own lock
  std::vector<std::shared_ptr<Driver>> drivers;
  {
    MutexLock lock(&mu_);
    drivers.assign(drivers_.begin(), drivers_.end());
  }
  s.connections = drivers.size();
  for (const auto& d : drivers) s.sessions.push_back(d->Stats(s.master_seq));
  s.accepted = counters_.accepted.load(std::memory_order_relaxed);
  s.rejected = counters_.rejected.load(std::memory_order_relaxed);
  s.bytes_out = counters_.bytes_out.load(std::memory_order_relaxed);
  s.bytes_in = counters_.bytes_in.load(std::memory_order_relaxed);
  s.syncs = counters_.syncs.load(std::memory_order_relaxed);
  s.keys_repaired = counters_.keys_repaired.load(std::memory_order_relaxed);
  s.last_sync_repaired = counters_.last_sync_repaired.load(std::memory_order_relaxed);
  s.last_sync_unix_ms = counters_.last_sync_unix_ms.load(std::memory_order_relaxed);
  return s;
}

}  // namespace sdiff::net
