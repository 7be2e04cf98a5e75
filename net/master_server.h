// MasterServer: accepts follower connections and runs one engine ServerSession
// per connection on its own strand, fed by a MasterHub (the replicated data:
// the plugin's RocksDB master, or an in-memory one in tests).
//
// Limits, each enforced with a log line: at most max_connections sessions
// (more are refused with Reject{kOverload}, as are all while the hub says it
// is unavailable: MasterHub::Unavailable), a handshake must finish within
// handshake_timeout, and a follower whose unsent backlog passes the
// connection's high-water mark is disconnected (it repairs itself on return);
// each batch counts for at most a quarter of the mark, so one large write
// waits for the link, sent a piece at a time, rather than dropping anyone. A
// follower that stops reading but goes on answering pings is disconnected when
// a write has moved nothing for the connection's write_stall_timeout.
// Until a peer has authenticated, its frames and reads are bounded by
// wire::kMaxHandshakeFrame: an unauthenticated connection holds a few KiB.
// Blocking work a session asks for (an auditor's self-audit, which scans the
// whole database) runs on one worker thread of the server's, one job at a
// time, never on an io_context thread. A failed accept (no file descriptor
// left) is retried after a backoff (net/accept_backoff.h), not at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/master_hub.h"
#include "engine/server_session.h"
#include "net/accept_backoff.h"
#include "net/ack_tracker.h"
#include "net/connection.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "net/tls.h"

namespace spdlog {
class logger;
}

namespace sdiff::net {

struct MasterServerOptions {
  std::string listen = "127.0.0.1:8123";  // HOST:PORT; port 0 lets the OS pick
  int threads = 1;  // io_context threads (one costs the least per write; see docs/benchmarks.md)
  // Database workers: sessions' repair reads, bootstrap scans, writes and
  // file reads run here, never on an io_context thread. A session's work
  // runs in order, one piece at a time.
  int db_threads = 2;
  size_t max_connections = 64;
  std::chrono::milliseconds handshake_timeout{5000};
  ConnectionOptions connection;
  TlsOptions tls;
  std::string secret;  // shared secret; empty: none (then loopback only, see below)
  // Without a secret the master refuses to listen beyond loopback unless this is set.
  bool allow_unauthenticated_remote = false;
  std::shared_ptr<spdlog::logger> logger;  // default: spdlog's default logger
  // Overrides for the sessions (ping interval, idle timeout, hash width...).
  int64_t ping_interval_ms = 1000;
  int64_t idle_timeout_ms = 15000;
  // Size of the pieces a large batch or value is sent in, and of repair and
  // bootstrap frames (ServerOptions::bulk_frame_bytes). Default: 1 MiB.
  size_t bulk_frame_bytes = 1 << 20;
  // A writer's write is acknowledged only once this many followers have
  // applied it (ServerOptions::min_acks); when ack_timeout passes first it
  // stays committed and its WriteAck says it was not replicated. 0: at once.
  size_t min_acks = 0;
  std::chrono::milliseconds ack_timeout{5000};
};

// One connected peer as the master last heard of it.
struct SessionStats {
  std::string peer;             // HOST:PORT
  Role role = Role::kFollower;  // from its Hello (kFollower until the Hello arrives)
  bool streaming = false;       // handshake done, being served
  uint64_t applied_seq = 0;     // the follower's last applied sequence, from its latest Pong
  // applied_seq once the follower is known to hold every write up to it
  // (ServerSession::acked_seq): what WaitForFollowers and min_acks count. 0
  // until then (a follower in its first diff) and for other roles.
  uint64_t acked_seq = 0;
  uint64_t lag_seqs = 0;  // MasterServerStats::master_seq - applied_seq, at least 0
  // How long the oldest batch the follower had not applied (per its latest
  // Pong) had been waiting since the hub gave it to this session, measured
  // when the follower last sent anything; 0 when it had applied everything
  // given to it. Followers report their position once per ping_interval_ms,
  // so the figure is that fresh, and during a diff (when the follower also
  // sends Nodes) it may read high by up to one ping interval.
  int64_t lag_ms = 0;
  // Memory held for the peer's unread input: the connection's read buffer and
  // the session's partial frame. Until the peer authenticates both are bounded
  // by wire::kMaxHandshakeFrame, so at most a few KiB.
  size_t input_buffer_bytes = 0;
};

struct MasterServerStats {
  size_t connections = 0;  // live sessions
  uint64_t accepted = 0;
  // Connections refused (too many, failed or timed-out handshake, bad secret
  // or frame) or dropped (protocol error, follower too slow to keep up).
  uint64_t rejected = 0;
  uint64_t bytes_out = 0;
  uint64_t bytes_in = 0;
  uint64_t syncs = 0;
  uint64_t keys_repaired = 0;
  int64_t last_sync_unix_ms = 0;       // when the last complete diff ended; 0: none yet
  uint64_t last_sync_repaired = 0;     // keys it repaired
  uint64_t master_seq = 0;             // the hub's current sequence when the stats were taken
  std::vector<SessionStats> sessions;  // one per live connection, in no particular order
};

class MasterServer {
 public:
  static Status Start(MasterHub* hub, MasterServerOptions options,
                      std::unique_ptr<MasterServer>* out);
  ~MasterServer();  // Stop()s
  MasterServer(const MasterServer&) = delete;
  MasterServer& operator=(const MasterServer&) = delete;

  uint16_t port() const { return port_; }
  // Stops accepting, closes every session (they finish their frame), joins threads.
  void Stop();
  // Asks every connected follower to diff, as after a change outside the
  // stream: until its diff completes, none counts as holding every write
  // (ServerSession::RequestCorrection).
  void RequestSyncAll();
  // Ends every session with `reason` (their peers come back, and start
  // again: a relay whose identity or position changed under them).
  void DisconnectAll(const std::string& reason);
  MasterServerStats stats() const;
  // How far each connected follower holds the writes; Wait on it from any
  // thread but the server's own.
  AckTracker& acks() { return acks_; }

 private:
  class Driver;
  friend class Driver;
  MasterServer(MasterHub* hub, MasterServerOptions options);
  void Accept();
  void Forget(Driver* driver, const Status& why, bool counts_as_rejected);

  MasterHub* hub_;
  MasterServerOptions options_;
  ConnectionOptions handshake_connection_;  // options_.connection with small reads
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  // Blocking work a session asks for (MasterHooks::audit), one job at a
  // time, off the io_context's threads. Declared after io_: its queued jobs
  // hold connections, which must go before the io_context does.
  asio::thread_pool blocking_{1};
  // The database workers (MasterServerOptions::db_threads); after io_ too.
  asio::thread_pool db_;
  tcp::acceptor acceptor_;           // on its own strand: accepts and Stop's close never race
  asio::steady_timer accept_retry_;  // the acceptor's strand: the wait after a failed accept
  AcceptBackoff accept_backoff_;     // the acceptor's strand
  uint16_t port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};

  std::function<uint64_t()> current_seq_;  // the hub's; constant after Start

  // Counted from every connection's strand without a lock.
  struct Counters {
    std::atomic<uint64_t> accepted{0}, rejected{0}, bytes_out{0}, bytes_in{0}, syncs{0},
        keys_repaired{0}, last_sync_repaired{0};
    // Set after last_sync_repaired: a reader may pair one diff's time with
    // the next one's count, which a status page tolerates.
    std::atomic<int64_t> last_sync_unix_ms{0};
  };
  Counters counters_;
  AckTracker acks_;

  mutable Mutex mu_;
  std::set<std::shared_ptr<Driver>> drivers_ GUARDED_BY(mu_);
};

}  // namespace sdiff::net
