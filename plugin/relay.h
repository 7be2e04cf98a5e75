// Relay: a follower that serves followers of its own (a chain: master -> F1
// -> F2). It serves the replica its follower's store keeps exactly as the
// master it follows would: the origin master's identity and sequence numbers,
// diffs against the store's own tree, repairs read from the replica, and
// bootstraps from a snapshot of it, so a follower of a follower resumes,
// diffs and bootstraps as from the master.
//
// It holds no second tree and tails nothing: the store tells it of every
// change (StoreChange). A stream write, which may hold several consecutive
// master batches, is relayed as one batch (seq: its first sequence, count:
// up to the store's position), so it stays atomic downstream too; the tree
// after it is the store's. Anything else (a repair, a bootstrap chunk, a jump
// of the stream's position at a diff's start) is a correction of the batch
// log: nobody resumes at or before it, and every follower is asked to diff,
// which carries the change on. A position the replica was not yet consistent
// at (its first diff after a start that did not resume) is not resumable
// either. When the replica's identity or families change, or its position
// goes back, every follower is disconnected and starts again.
//
// It refuses followers (Reject{kOverload}) until the replica follows a master
// at a known position, and while it is bootstrapping; cloners, writers and
// auditors it refuses with Reject{kRole}: a copy of its files would carry its
// own RocksDB sequences, not the origin's, so a new follower of a relay
// starts empty and is bootstrapped by keys.
//
// Threads: OnChange comes from the follower client's thread (the only writer
// of the batch log); the hub's calls from the server's threads; status()
// from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/master_hub.h"
#include "net/master_server.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "plugin/batch_log.h"
#include "plugin/follower_store.h"
#include "plugin/rocks_master_hooks.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

// A server that does not listen: RelayOptions' default.
net::MasterServerOptions NotListening();

struct RelayOptions {
  // Where to accept followers, their secret, TLS and limits, as a master's.
  // An empty listen (the default) serves none.
  net::MasterServerOptions server = NotListening();
  // Recent batches kept for followers that come back. Default: 64 MiB.
  size_t resume_window_bytes = 64 << 20;
  // An empty follower of a relay holding at least this many keys is
  // bootstrapped by keys (a relay serves no files). Default: 10000.
  uint64_t bootstrap_min_keys = 10000;
  bool enabled() const { return !server.listen.empty(); }
};

struct RelayStatus {
  uint16_t port = 0;
  uint64_t seq = 0;  // the last master sequence relayed: this node's position
  uint64_t keys = 0;
  // Why it refuses followers now; empty while it serves them.
  std::string unavailable;
  net::MasterServerStats server;  // its followers, each with its lag behind this node
};

class Relay : public MasterHub {
 public:
  // Takes `store`'s changes from now on: make it before the client that
  // writes the store starts. `store` outlives the relay, and the client
  // stops before it goes.
  Relay(RocksFollowerStore* store, RelayOptions options, KeyHasher key_hasher,
        std::shared_ptr<spdlog::logger> logger);
  ~Relay() override;  // Stop()s
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Starts serving. `newest_seq`: the newest origin sequence the follower has
  // heard of, which the relay's Pings pass on (its followers' lag is then
  // end to end). Errors: the listen address, TLS files.
  Status Serve(std::function<uint64_t()> newest_seq);
  // Stops serving (sessions end); the relay still takes the store's changes.
  void Stop();
  uint16_t port() const;
  RelayStatus status();

  // MasterHub.
  ServerOptions SessionOptions() override;
  MasterHooks SessionHooks() override;
  void Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) override;
  void RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) override;
  void Unsubscribe(const BatchSink* sink) override;
  std::string Unavailable() override;

 private:
  // The client's thread: what the store's change means for the followers.
  void OnChange(const StoreChange& change);
  // Takes the replica's identity and families; true if they changed from
  // ones it served.
  bool TakeIdentity(const std::string& master_id);
  net::MasterServer* server() const;  // null until Serve

  RocksFollowerStore* const store_;
  const RelayOptions options_;
  const std::shared_ptr<spdlog::logger> logger_;
  BatchLog log_;
  std::function<uint64_t()> newest_seq_;  // set by Serve, before the server starts

  // The client's thread only: the log holds a position (it has been Corrected once).
  bool positioned_ = false;

  mutable net::Mutex mu_;
  // Set by Serve, while the client may be writing already; destroyed with the relay.
  std::unique_ptr<net::MasterServer> server_ GUARDED_BY(mu_);
  std::string unavailable_ GUARDED_BY(mu_);
  std::string master_id_ GUARDED_BY(mu_);
  std::vector<FamilyInfo> families_ GUARDED_BY(mu_);
  // The hooks for the identity and families above; older ones are kept (a
  // few hundred bytes each) for the sessions that still use them until the
  // relay goes: those are disconnected when the identity changes.
  RocksMasterHooks* hooks_ GUARDED_BY(mu_) = nullptr;
  std::vector<std::unique_ptr<RocksMasterHooks>> generations_ GUARDED_BY(mu_);
};

}  // namespace sdiff::plugin
