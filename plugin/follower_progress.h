// FollowerProgress: a follower's bootstrap and repairs, reported through
// FollowerOptions::progress. It sits between the client and the replica's
// store and counts the keys each bootstrap and repair write carries (a
// counter increment on the write path); a sampler thread turns the counts
// into reports a few times a second, and ends a repair when the client says
// its diff completed or the connection ended.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "net/follower_client.h"
#include "net/stop_signal.h"
#include "plugin/progress.h"

namespace sdiff::plugin {

class FollowerProgress : public FollowerStore {
 public:
  // `store` must outlive this object, and this object the client that writes through it.
  FollowerProgress(FollowerStore* store, ProgressFn report,
                   std::chrono::milliseconds period = std::chrono::milliseconds(250));
  ~FollowerProgress() override;  // Stop()s
  FollowerProgress(const FollowerProgress&) = delete;
  FollowerProgress& operator=(const FollowerProgress&) = delete;

  // Starts sampling; `client` (the one writing through this store) must stay
  // alive until Stop() returns.
  void Start(const net::FollowerClient* client);
  void Stop();

  // FollowerStore: the store's own, with writes counted.
  FollowerHooks Hooks() override;
  FollowerState State() override { return store_->State(); }
  Status Prepare() override { return store_->Prepare(); }

 private:
  void Run();
  void Sample();

  FollowerStore* const store_;
  const ProgressFn report_;
  const std::chrono::milliseconds period_;
  const net::FollowerClient* client_ = nullptr;

  // Written by the client's thread, read by the sampler.
  std::atomic<uint64_t> bootstrap_keys_{0};
  std::atomic<uint64_t> repair_keys_{0};
  std::atomic<bool> bootstrapping_{false};

  net::StopSignal stop_;
  std::thread thread_;

  // The sampler thread's own.
  bool bootstrap_open_ = false;
  uint64_t bootstrap_base_ = 0;  // keys counted before this bootstrap
  bool repair_open_ = false;
  uint64_t repair_base_ = 0;  // keys counted before this repair
  uint64_t last_repair_keys_ = 0;
  uint64_t syncs_ = 0, connects_ = 0;                // at the previous sample
  uint64_t repair_syncs_ = 0, repair_connects_ = 0;  // before the repair began
};

}  // namespace sdiff::plugin
