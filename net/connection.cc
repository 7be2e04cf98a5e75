// The read loop, write queue, ticks and closing of one connection.
#include "net/connection.h"

#include <openssl/crypto.h>

#include <utility>

namespace sdiff::net {
namespace {

// Queued frames are joined into one write up to this many bytes.
constexpr size_t kJoinLimit = 256 << 10;

std::string Describe(const tcp::socket& socket) {
  boost::system::error_code ec;
  tcp::endpoint ep = socket.remote_endpoint(ec);
  if (ec) return "unknown peer";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Connection::Connection(tcp::socket socket, asio::ssl::context* tls, bool server_side,
                       std::shared_ptr<ConnectionHandler> handler, ConnectionOptions options)
    : own_context_(asio::ssl::context::tls),
      stream_(std::move(socket), tls != nullptr ? *tls : own_context_),
      tls_(tls != nullptr),
      server_side_(server_side),
      handler_(std::move(handler)),
      options_(options),
      tick_timer_(stream_.get_executor()),
      flush_timer_(stream_.get_executor()),
      peer_(Describe(stream_.next_layer())) {
  records_error_ = RecordChannel::Create(options_.secret, server_side_, &records_);
  OPENSSL_cleanse(options_.secret.data(), options_.secret.size());
}

Connection::~Connection() = default;

template <typename Fn>
void Connection::WithStream(Fn&& fn) {
  if (tls_) {
    fn(stream_);
  } else {
    fn(stream_.next_layer());
  }
}

void Connection::VerifyServerName(const std::string& host) {
  if (!tls_) return;
  SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str());
  stream_.set_verify_callback(asio::ssl::host_name_verification(host));
}

void Connection::Start() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    // Closed before it started (a master stopping between accepting a
    // connection and starting it): arm nothing, or the handshake timer alone
    // would keep the server's threads alive until it fires.
    if (self->closing_) return self->Finish();
    if (!self->tls_) return self->Open();
    // A peer that never finishes the TLS handshake must not hold the
    // connection forever. Tick() re-arms this timer once open.
    self->tick_timer_.expires_after(self->options_.handshake_timeout);
    self->tick_timer_.async_wait([self](const boost::system::error_code& ec) {
      if (ec || self->opened_) return;
      self->CloseOnStrand(
          Status::IOError("TLS handshake not finished within " +
                          std::to_string(self->options_.handshake_timeout.count()) + " ms"),
          false);
    });
    auto type =
        self->server_side_ ? asio::ssl::stream_base::server : asio::ssl::stream_base::client;
    self->stream_.async_handshake(type, [self](const boost::system::error_code& ec) {
      if (ec)
        return self->CloseOnStrand(Status::IOError("TLS handshake failed: " + ec.message()), false);
      self->Open();
    });
  });
}

// Every handler call holds its own reference: a call that ends in Finish()
// drops handler_, and the handler's frames are still on the stack.
void Connection::Open() {
  if (closing_) return Finish();
  if (!records_error_.ok()) return CloseOnStrand(records_error_, false);
  opened_ = true;
  // The record layer's hello goes first, before anything sent meanwhile.
  queued_bytes_ += records_->hello().size();
  queue_.push_front(records_->hello());
  auto handler = handler_;
  handler->OnOpen(*this);
  Write();  // what was sent before the handshake finished
  Tick();
  Read();
}

void Connection::set_reading_paused(bool paused) {
  if (read_paused_ == paused) return;
  read_paused_ = paused;
  if (!paused && opened_) Read();
}

void Connection::Read() {
  if ((closing_ && !draining_) || reading_ || finished_ || (read_paused_ && !draining_)) return;
  reading_ = true;
  read_buffer_.resize(options_.read_bytes);
  WithStream([&](auto& s) {
    s.async_read_some(
        asio::buffer(read_buffer_),
        [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
          self->reading_ = false;
          if (self->finished_) return;
          if (self->draining_) {  // the peer's last bytes, dropped, until it closes
            if (ec) return self->Finish();
            return self->Read();
          }
          if (self->closing_) return;  // flushing its last bytes
          if (ec) {
            bool eof = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
            return self->CloseOnStrand(eof ? Status::Aborted("peer closed the connection")
                                           : Status::IOError("read failed: " + ec.message()),
                                       false);
          }
          self->plain_.clear();
          Status s =
              self->records_->Open(std::string_view(self->read_buffer_.data(), n), &self->plain_);
          if (!self->plain_.empty()) {
            auto handler = self->handler_;
            handler->OnBytes(*self, self->plain_);
          }
          if (!s.ok()) {
            if (s.IsAborted()) return self->CloseOnStrand(s, false);  // the peer's alert
            // Tell the peer why (a wrong secret shows there, not only here),
            // with nothing else from us after it.
            self->queue_.push_back(RecordChannel::Alert(s.message()));
            self->queued_bytes_ += self->queue_.back().size();
            return self->CloseOnStrand(s, true);
          }
          self->Read();
        });
  });
}

void Connection::Send(std::string bytes) {
  if (bytes.empty() || closing_ || records_ == nullptr) return;
  std::string sealed;
  records_->Seal(bytes, &sealed);
  queued_bytes_ += sealed.size();
  queue_.push_back(std::move(sealed));
  if (queued_bytes_ > options_.high_water_bytes && !closing_) {
    peer_stalled_ = true;
    return CloseOnStrand(
        Status::Aborted("peer is not reading: " + std::to_string(queued_bytes_) +
                        " bytes queued, limit " + std::to_string(options_.high_water_bytes)),
        false);
  }
  Write();
}

void Connection::Write() {
  // Nothing goes out before the TLS handshake is done: a write would run a
  // second handshake on the same stream.
  if (!opened_ || writing_ || queue_.empty() || finished_) return;
  writing_ = true;
  // Everything queued while the last write was in flight goes out in this
  // one: small frames (stream batches, a few hundred bytes each) are joined
  // into the first, so a burst costs one system call (and one TLS record),
  // not one per frame. Bulk frames are big enough to go alone, uncopied.
  while (queue_.size() > 1 && queue_[0].size() + queue_[1].size() <= kJoinLimit) {
    queue_[0] += queue_[1];
    queue_.erase(queue_.begin() + 1);
  }
  write_progress_ms_ = SteadyNowMs();
  WithStream([&](auto& s) {
    // The completion condition runs after each partial write: the time of
    // the last one that moved bytes is what Tick's stall deadline watches.
    auto note_progress = [this, sent = size_t{0}](const boost::system::error_code& ec,
                                                  size_t n) mutable {
      if (n != sent) {
        sent = n;
        write_progress_ms_ = SteadyNowMs();
      }
      return asio::transfer_all()(ec, n);
    };
    asio::async_write(s, asio::buffer(queue_.front()), note_progress,
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                        self->writing_ = false;
                        if (self->finished_) return;
                        if (ec) {
                          // Closing already: the flush cannot go on, so do not
                          // wait out flush_timeout.
                          if (self->closing_) return self->Finish();
                          return self->CloseOnStrand(
                              Status::IOError("write failed: " + ec.message()), false);
                        }
                        self->queued_bytes_ -= self->queue_.front().size();
                        self->queue_.pop_front();
                        if (self->closing_) {
                          if (self->queue_.empty()) return self->Drain();
                          return self->Write();
                        }
                        if (self->queued_bytes_ < self->options_.low_water_bytes) {
                          auto handler = self->handler_;
                          handler->OnWritable(*self);
                        }
                        self->Write();
                      });
  });
}

void Connection::Tick() {
  if (closing_) return;
  int64_t now = SteadyNowMs();
  // A peer that sends (answers pings) but never reads looks alive to the
  // session, and a quiet stream never fills the queue to the high-water
  // mark: only a write that stopped moving shows it.
  const int64_t stall_limit = options_.write_stall_timeout.count();
  if (writing_ && stall_limit > 0 && now - write_progress_ms_ > stall_limit) {
    peer_stalled_ = true;
    return CloseOnStrand(
        Status::IOError("peer has not read for " + std::to_string(now - write_progress_ms_) +
                        " ms (" + std::to_string(queued_bytes_) + " bytes queued)"),
        false);
  }
  auto handler = handler_;
  handler->OnTick(*this, now);
  if (closing_) return;
  tick_timer_.expires_after(options_.tick_interval);
  tick_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->Tick();
  });
}

void Connection::Close(Status why, bool flush) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), why = std::move(why), flush] {
    self->CloseOnStrand(why, flush);
  });
}

void Connection::Post(std::function<void()> fn) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn)] {
    if (!self->finished_) fn();
  });
}

void Connection::CloseOnStrand(Status why, bool flush) {
  if (closing_ || finished_) return;
  closing_ = true;
  close_reason_ = std::move(why);
  tick_timer_.cancel();
  if (flush && opened_) {
    // Let the writes finish and the peer close, but not forever: one
    // deadline for both.
    flush_timer_.expires_after(options_.flush_timeout);
    flush_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->Finish();
    });
    if (writing_ || !queue_.empty()) return Write();
    return Drain();
  }
  Finish();
}

// Everything is sent: tell the peer (FIN) and read until it closes as well,
// so our close sends no reset. The close's deadline (flush_timer_) bounds it.
void Connection::Drain() {
  if (draining_ || finished_) return;
  draining_ = true;
  boost::system::error_code ignored;
  stream_.lowest_layer().shutdown(tcp::socket::shutdown_send, ignored);
  Read();
}

// Closes the socket (pending operations complete with errors) and tells the
// handler, once.
void Connection::Finish() {
  if (finished_) return;
  finished_ = true;
  closing_ = true;
  tick_timer_.cancel();
  flush_timer_.cancel();
  boost::system::error_code ignored;
  stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.lowest_layer().close(ignored);
  queue_.clear();
  queued_bytes_ = 0;
  auto handler = std::move(handler_);
  if (close_reason_.ok()) close_reason_ = Status::Aborted("connection closed");
  handler->OnClose(*this, close_reason_);
}

}  // namespace sdiff::net
