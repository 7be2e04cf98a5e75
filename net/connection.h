// Connection: one TCP (optionally TLS) connection on its own strand, moving
// bytes between the socket and a handler. One read loop, at most one write in
// flight, a bounded outgoing queue, a periodic tick, and a deadline on a write
// that makes no progress. It knows bytes, records and deadlines, never
// messages: the handler (a session driver) does the protocol. Every byte
// travels in a RecordChannel's records (checksummed, or MACed under the shared
// secret), so a corrupted or tampered byte closes the connection before the
// handler sees it.
//
// Threads: every handler call and every member marked "strand" runs on the
// connection's strand; Close and Post may be called from any thread.
// Lifetime: the connection keeps itself alive while operations are pending
// (shared_from_this) and keeps its handler alive until OnClose, and any
// handler call that led to it, return.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "net/record_channel.h"

namespace sdiff::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct ConnectionOptions {
  // Outgoing bytes queued past this mean the peer is not reading: it is dropped.
  size_t high_water_bytes = 64 << 20;  // Default: 64 MiB
  // Below this the handler is asked for more bulk output (OnWritable).
  size_t low_water_bytes = 1 << 20;  // Default: 1 MiB
  // Bytes asked of the socket per read: the read buffer's size. A master
  // starts at wire::kMaxHandshakeFrame and raises it (set_read_bytes) once
  // the peer has authenticated.
  size_t read_bytes = 64 << 10;  // Default: 64 KiB
  std::chrono::milliseconds tick_interval{100};
  // How long a closing connection may spend sending what it still holds.
  std::chrono::milliseconds flush_timeout{1000};
  // A write that moves no byte for this long means the peer stopped reading
  // while it may still send (a follower answering pings keeps the idle
  // timeout away, and a quiet stream never reaches the high-water mark): the
  // connection is closed. Longer than a session's idle timeout (15 s), so a
  // peer merely busy, which also stops sending, meets that first. Zero: no
  // limit. Default: 30 s
  std::chrono::milliseconds write_stall_timeout{30000};
  // How long the TLS handshake may take; the protocol's handshake after OnOpen
  // is the handler's to time. MasterServer and FollowerClient set this from
  // their own handshake_timeout.
  std::chrono::milliseconds handshake_timeout{5000};
  // The shared secret that keys the record layer's MACs; empty: checksums.
  // Both ends must agree (net/record_channel.h).
  std::string secret;
};

class Connection;

class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  virtual void OnOpen(Connection& connection) = 0;  // after the TLS handshake
  virtual void OnBytes(Connection& connection, std::string_view bytes) = 0;
  virtual void OnTick(Connection& connection, int64_t now_ms) = 0;
  virtual void OnWritable(Connection& connection) = 0;                  // queue below low water
  virtual void OnClose(Connection& connection, const Status& why) = 0;  // once
};

// Milliseconds on the steady clock, the time base of every session.
int64_t SteadyNowMs();

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `socket` must use a strand executor (asio::make_strand). `tls` is null for
  // plain TCP, else it must outlive the connection.
  Connection(tcp::socket socket, asio::ssl::context* tls, bool server_side,
             std::shared_ptr<ConnectionHandler> handler, ConnectionOptions options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Client side with TLS: the name the server's certificate must carry (also
  // sent as SNI). Call before Start.
  void VerifyServerName(const std::string& host);
  void Start();  // TLS handshake (if any), OnOpen, then reads and ticks

  void Send(std::string bytes);                          // strand; queued until OnOpen
  size_t queued_bytes() const { return queued_bytes_; }  // strand
  bool closing() const { return closing_; }              // strand
  // Strand: closed because the peer stopped reading (its queue passed the
  // high-water mark, or a write stalled for write_stall_timeout).
  bool peer_stalled() const { return peer_stalled_; }
  // Strand. The size of reads from the next one on.
  void set_read_bytes(size_t bytes) { options_.read_bytes = bytes; }
  // Strand. Paused: no read is started (one in flight still delivers), so a
  // peer that sends faster than its handler takes meets TCP's flow control.
  // A closing connection reads regardless.
  void set_reading_paused(bool paused);
  // Strand: the read buffer and the part of a record held until it is whole.
  size_t read_buffer_bytes() const {
    return read_buffer_.capacity() + (records_ ? records_->buffered_bytes() : 0);
  }

  // Ends the connection: with `flush`, after sending what is queued and then
  // reading (and dropping) what the peer still sends until it closes too,
  // both within flush_timeout; OnClose gets `why`. Any thread; later calls do
  // nothing. (Closing a socket with unread input sends a reset, which can
  // destroy the peer's copy of our last bytes before it reads them.)
  void Close(Status why, bool flush = true);
  void Post(std::function<void()> fn);  // runs fn on the strand

  const std::string& peer() const { return peer_; }

 private:
  template <typename Fn>
  void WithStream(Fn&& fn);
  void Open();
  void Read();
  void Write();
  void Tick();
  void CloseOnStrand(Status why, bool flush);
  void Drain();
  void Finish();

  asio::ssl::context own_context_;  // unused placeholder when not using TLS
  asio::ssl::stream<tcp::socket> stream_;
  bool tls_;
  bool server_side_;
  std::shared_ptr<ConnectionHandler> handler_;
  ConnectionOptions options_;
  asio::steady_timer tick_timer_;
  asio::steady_timer flush_timer_;
  std::string peer_;
  std::string read_buffer_;
  std::unique_ptr<RecordChannel> records_;  // null if it could not be made
  Status records_error_;
  std::string plain_;              // the payloads of one read's records
  std::deque<std::string> queue_;  // front is being written when writing_
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  int64_t write_progress_ms_ = 0;  // when the write in flight last moved bytes
  bool peer_stalled_ = false;
  bool reading_ = false;  // a read is in flight
  bool read_paused_ = false;
  bool draining_ = false;  // closing: sent our FIN, reading until the peer's
  bool opened_ = false;
  bool closing_ = false;
  bool finished_ = false;
  Status close_reason_;
};

}  // namespace sdiff::net
