// Counting a follower's bulk writes and sampling them into progress reports.
#include "plugin/follower_progress.h"

#include <pthread.h>

#include <utility>

namespace sdiff::plugin {

FollowerProgress::FollowerProgress(FollowerStore* store, ProgressFn report,
                                   std::chrono::milliseconds period)
    : store_(store), report_(std::move(report)), period_(period) {}

FollowerProgress::~FollowerProgress() { Stop(); }

void FollowerProgress::Start(const net::FollowerClient* client) {
  client_ = client;
  net::FollowerClientStatus s = client_->status();
  syncs_ = s.syncs;
  connects_ = s.connects;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sdiff-progress");
    Run();
  });
}

void FollowerProgress::Stop() {
  stop_.Stop();
  if (thread_.joinable()) thread_.join();
}

FollowerHooks FollowerProgress::Hooks() {
  FollowerHooks hooks = store_->Hooks();
  hooks.write = [this, write = std::move(hooks.write)](const ApplyRequest& request) {
    Status s = write(request);
    if (!s.ok()) return s;
    if (request.source == ApplyRequest::Source::kBootstrap) {
      bootstrap_keys_.fetch_add(request.ops.size(), std::memory_order_relaxed);
      bootstrapping_.store(request.state.bootstrapping, std::memory_order_relaxed);
    } else if (request.source == ApplyRequest::Source::kRepair) {
      repair_keys_.fetch_add(request.ops.size(), std::memory_order_relaxed);
    }
    return s;
  };
  return hooks;
}

void FollowerProgress::Run() {
  while (!stop_.WaitFor(period_)) Sample();
}

void FollowerProgress::Sample() {
  net::FollowerClientStatus client = client_->status();

  // A bootstrap runs from its first chunk to the one that clears the flag.
  uint64_t bootstrap = bootstrap_keys_.load(std::memory_order_relaxed);
  bool bootstrapping = bootstrapping_.load(std::memory_order_relaxed);
  if (!bootstrap_open_ && (bootstrapping || bootstrap != bootstrap_base_)) {
    bootstrap_open_ = true;
  }
  if (bootstrap_open_) {
    bool done = !bootstrapping;
    report_({Progress::Kind::kBootstrap, bootstrap - bootstrap_base_, 0, done});
    if (done) {
      bootstrap_open_ = false;
      bootstrap_base_ = bootstrap;
    }
  }

  // A repair begins with its first repaired key and ends when the client
  // counts a complete diff, or reconnects, or is disconnected.
  uint64_t repair = repair_keys_.load(std::memory_order_relaxed);
  if (!repair_open_ && repair != last_repair_keys_) {
    repair_open_ = true;
    repair_base_ = last_repair_keys_;
    repair_syncs_ = syncs_;
    repair_connects_ = connects_;
  }
  if (repair_open_) {
    bool done =
        client.syncs != repair_syncs_ || client.connects != repair_connects_ || !client.connected;
    report_({Progress::Kind::kRepair, repair - repair_base_, 0, done});
    if (done) repair_open_ = false;
  }
  last_repair_keys_ = repair;
  syncs_ = client.syncs;
  connects_ = client.connects;
}

}  // namespace sdiff::plugin
