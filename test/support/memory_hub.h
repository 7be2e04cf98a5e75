// Thread-safe in-memory master hub and follower store, so the net/ layer can
// be tested over real sockets without RocksDB. Each wraps the engine's
// MemoryMaster / MemoryFollower behind one mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/follower_store.h"
#include "engine/master_hub.h"
#include "engine/testing/memory_replica.h"

namespace sdiff::testing {

class MemoryHub : public MasterHub {
 public:
  explicit MemoryHub(std::string id) : master_(std::move(id)) {}

  ServerOptions SessionOptions() override;
  MasterHooks SessionHooks() override;
  void Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) override;
  void RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) override;
  void Unsubscribe(const BatchSink* sink) override;

  void Write(std::vector<Op> ops);
  void Put(const std::string& key, const std::string& value) {
    Write({Op{OpKind::kPut, 0, key, value}});
  }
  KeyValueMap Data();
  uint64_t seq();
  size_t subscribers();

 private:
  std::mutex mu_;
  MemoryMaster master_;                            // GUARDED_BY(mu_)
  std::vector<std::shared_ptr<BatchSink>> sinks_;  // GUARDED_BY(mu_)
  std::mt19937_64 rng_{1};                         // GUARDED_BY(mu_)
};

class MemoryFollowerStore : public FollowerStore {
 public:
  FollowerHooks Hooks() override;
  FollowerState State() override;

  KeyValueMap Data();
  // Direct edits behind replication's back.
  void Edit(const std::function<void(MemoryFollower&)>& fn);
  // Waits until the data equals `expected` or the timeout passes.
  bool WaitForData(const KeyValueMap& expected, std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  MemoryFollower follower_;  // GUARDED_BY(mu_)
  std::mt19937_64 rng_{2};   // GUARDED_BY(mu_)
};

}  // namespace sdiff::testing
