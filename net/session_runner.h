// RunClientSession: one connection to a master, driven to the end of one
// sans-I/O client session, in the calling thread. The one-shot clients use it
// (sdiff-ldb's diff, repair and writes); a follower that must stay connected
// uses FollowerClient instead.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "net/connection.h"
#include "net/lookup.h"
#include "net/tls.h"

namespace sdiff::net {

// A client session as the runner sees it: bytes and time in, bytes out.
class ClientProtocol {
 public:
  virtual ~ClientProtocol() = default;
  virtual void Start() = 0;  // the connection is open: produce the first frames
  virtual void OnBytes(std::string_view bytes) = 0;
  virtual void OnTick(int64_t now_ms) = 0;
  virtual std::string TakeOutput() = 0;
  // Finished, well or badly: the runner sends what is left and closes.
  virtual bool finished() const = 0;
  // Why the session failed; OK if it finished well.
  virtual Status error() const = 0;
};

struct ClientRunOptions {
  std::string master = "127.0.0.1:8123";  // HOST:PORT
  TlsOptions tls;
  // The name lookup and the connect together must finish within this.
  std::chrono::milliseconds connect_timeout{5000};
  // The whole call (lookup, connect, handshake and session) must finish
  // within this; zero: no limit.
  std::chrono::milliseconds deadline{0};
  ConnectionOptions connection;
  LookupFun lookup;  // empty: SystemLookup(); a seam for tests
};

// Connects, runs `protocol` until it finishes or the connection ends, closes.
// OK only if the protocol finished without error. Errors are one line: the
// address cannot be resolved or reached (in time), TLS failed, the master
// closed the connection (with its reason, from the protocol when it has one),
// the deadline passed. `secret` keys the record layer as it keys the handshake's
// proofs (empty: none).
Status RunClientSession(const ClientRunOptions& options, ClientProtocol* protocol,
                        std::string_view secret);

}  // namespace sdiff::net
