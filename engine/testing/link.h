// Link: one ServerSession and one ClientSession joined by in-memory byte
// queues, with the embedder's duties done the way the real plugin does them
// (replay the log on kStreamFrom, snapshot on kWantSnapshot). The caller
// decides when and how many bytes cross, so tests can interleave at will.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "engine/client_session.h"
#include "engine/server_session.h"
#include "engine/testing/memory_replica.h"

namespace sdiff::testing {

// What happened on a link, for tests to check that a path really ran.
struct LinkStats {
  int resumes = 0, diffs = 0, bootstraps = 0;  // Welcome modes
  int syncs = 0, retries = 0;                  // diffs finished, and those that must repeat
  int round_trips = 0;                         // over all diffs
  uint64_t repaired = 0;
  uint64_t repair_payload_bytes = 0;  // keys and values of the puts repairs applied
  LinkStats& operator+=(const LinkStats& o) {
    resumes += o.resumes, diffs += o.diffs, bootstraps += o.bootstraps;
    syncs += o.syncs, retries += o.retries, round_trips += o.round_trips;
    repaired += o.repaired, repair_payload_bytes += o.repair_payload_bytes;
    return *this;
  }
};

struct LinkOptions {
  ServerOptions server;  // master_id etc. are filled from the master
  ClientOptions client;
  size_t window_bytes = 256 << 10;  // bulk output is produced while less is in flight
};

class Link {
 public:
  Link(MemoryMaster* master, MemoryFollower* follower, std::mt19937_64* rng,
       LinkOptions options = {});

  void Start();
  void OnMasterBatch(const Batch& batch);
  void RequestSyncFromFollower();
  void RequestSyncFromMaster();
  void Tick(int64_t now_ms);

  // Delivers up to max_bytes of what is in flight; returns how many crossed.
  size_t DeliverToFollower(size_t max_bytes);
  size_t DeliverToMaster(size_t max_bytes);
  // Delivers everything in both directions until nothing moves (bounded).
  // Returns false if it did not settle within max_rounds.
  bool RunUntilQuiet(int max_rounds = 100000);

  bool closed() const { return server_->closed() || client_->closed(); }
  bool quiescent() const;
  ServerSession& server() { return *server_; }
  ClientSession& client() { return *client_; }
  uint64_t bytes_to_follower() const { return bytes_to_follower_; }
  uint64_t bytes_to_master() const { return bytes_to_master_; }
  const LinkStats& stats() const { return stats_; }

 private:
  void Pump();

  MemoryMaster* master_;
  size_t window_bytes_;
  MasterHooks hooks_;  // the server's, to serve its database requests
  std::unique_ptr<ServerSession> server_;
  std::unique_ptr<ClientSession> client_;
  std::string to_follower_;
  std::string to_master_;
  uint64_t bytes_to_follower_ = 0;
  uint64_t bytes_to_master_ = 0;
  LinkStats stats_;
};

}  // namespace sdiff::testing
