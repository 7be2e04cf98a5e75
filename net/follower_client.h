// FollowerClient: keeps a connection to the master, forever: connects, runs an
// engine ClientSession over it, and after any failure reconnects with capped
// exponential backoff and jitter, logging each attempt once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "engine/client_session.h"
#include "engine/follower_store.h"
#include "net/connection.h"
#include "net/lookup.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "net/tls.h"

namespace spdlog {
class logger;
}

namespace sdiff::net {

struct FollowerClientOptions {
  std::string master = "127.0.0.1:8123";  // HOST:PORT
  TlsOptions tls;
  std::string secret;  // shared secret; empty: none
  ClientOptions session;
  ConnectionOptions connection;
  // The name lookup and the connect together must finish within this.
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10000};
  // Periodic anti-entropy diff while connected; zero: off.
  std::chrono::milliseconds repair_interval{0};
  std::shared_ptr<spdlog::logger> logger;  // default: spdlog's default logger
  LookupFun lookup;                        // empty: SystemLookup(); a seam for tests
};

struct FollowerClientStatus {
  bool connected = false;  // streaming from the master
  uint64_t applied_seq = 0;
  uint64_t master_seq = 0;
  uint64_t connects = 0;    // successful handshakes
  uint64_t reconnects = 0;  // connection attempts after the first
  uint64_t bootstraps = 0;  // connections the master began by sending every key (kBootstrap)
  uint64_t syncs = 0;
  uint64_t last_repaired = 0;
  int64_t last_sync_unix_ms = 0;  // wall-clock end of the last complete diff; 0: none yet
  // How the master brought the last connection up to date (valid once connects > 0).
  StartMode last_mode = StartMode::kDiff;
  std::string last_error;  // why the last connection ended, or failed to start
  // How long the follower has been behind the newest master sequence it heard
  // of, on its own clock (ClientSession::lag_ms); 0 when caught up.
  int64_t lag_ms = 0;
  uint64_t bytes_in = 0;   // bytes received from the master, all connections
  uint64_t bytes_out = 0;  // bytes sent to the master, all connections
};

class FollowerClient {
 public:
  static Status Start(FollowerStore* store, FollowerClientOptions options,
                      std::unique_ptr<FollowerClient>* out);
  ~FollowerClient();  // Stop()s
  FollowerClient(const FollowerClient&) = delete;
  FollowerClient& operator=(const FollowerClient&) = delete;

  void Stop();  // closes the connection (finishing the batch in hand) and joins
  void RequestSync();
  FollowerClientStatus status() const;
  // Waits until `pred(status())` holds or the deadline passes; returns pred's last value.
  bool WaitFor(const std::function<bool(const FollowerClientStatus&)>& pred,
               std::chrono::milliseconds timeout) const;

 private:
  class Driver;
  friend class Driver;
  FollowerClient(FollowerStore* store, FollowerClientOptions options);
  void Connect();
  void ScheduleReconnect();
  void Update(const std::function<void(FollowerClientStatus&)>& fn);

  FollowerStore* store_;
  FollowerClientOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<asio::ssl::context> tls_;
  std::string host_;
  std::string port_;
  asio::io_context io_;
  asio::strand<asio::io_context::executor_type> strand_;  // connect/backoff state
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer retry_timer_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  // Since the last connection that lasted backoff_max after its handshake.
  std::atomic<int> attempts_{0};
  bool prepared_ = false;                 // strand: store_->Prepare() succeeded
  std::function<void()> cancel_attempt_;  // strand: aborts a connect in progress
  std::mt19937_64 jitter_;
  std::shared_ptr<Connection> connection_;  // strand
  std::shared_ptr<Driver> driver_;          // strand

  mutable Mutex mu_;
  mutable CondVar changed_{&mu_};
  FollowerClientStatus status_ GUARDED_BY(mu_);
};

}  // namespace sdiff::net
