// Locking wrappers around the engine's in-memory master and follower.
#include "test/support/memory_hub.h"

#include <algorithm>
#include <cassert>

namespace sdiff::testing {

ServerOptions MemoryHub::SessionOptions() {
  std::lock_guard lock(mu_);
  return master_.Options();
}

MasterHooks MemoryHub::SessionHooks() {
  std::lock_guard lock(mu_);
  MasterHooks inner = master_.Hooks(&rng_);
  MasterHooks h;
  h.current_seq = [this, f = inner.current_seq] {
    std::lock_guard l(mu_);
    return f();
  };
  h.key_count = [this, f = inner.key_count] {
    std::lock_guard l(mu_);
    return f();
  };
  h.can_resume = [this, f = inner.can_resume](uint64_t seq) {
    std::lock_guard l(mu_);
    return f(seq);
  };
  h.read = [this, f = inner.read](const std::vector<KeyRef>& keys,
                                  std::vector<std::optional<std::string>>* values) {
    std::lock_guard l(mu_);
    return f(keys, values);
  };
  h.open_bootstrap = [this, f = inner.open_bootstrap](bool resume, FamilyTag family,
                                                      const std::string& key) {
    std::lock_guard l(mu_);
    return f(resume, family, key);
  };
  h.scan_bootstrap = [this, f = inner.scan_bootstrap](size_t max_bytes, std::vector<Op>* out) {
    std::lock_guard l(mu_);
    return f(max_bytes, out);
  };
  h.random_bytes = [this, f = inner.random_bytes](uint8_t* out, size_t n) {
    std::lock_guard l(mu_);
    f(out, n);
  };
  return h;
}

void MemoryHub::Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) {
  std::lock_guard lock(mu_);
  std::vector<StreamBatch> log;
  for (const Batch* b : master_.LogFrom(from_seq)) {
    log.push_back(StreamBatch{std::make_shared<Batch>(*b), nullptr});
  }
  if (!log.empty()) sink->OnBatches(std::move(log));
  sinks_.push_back(std::move(sink));
}

void MemoryHub::RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) {
  std::lock_guard lock(mu_);
  assert(master_.seq() >= seq);  // writes reach the in-memory tree as they are made
  (void)seq;
  sink->OnSnapshot(master_.tree().Snapshot(), master_.seq());
}

void MemoryHub::Unsubscribe(const BatchSink* sink) {
  std::lock_guard lock(mu_);
  std::erase_if(sinks_, [sink](const auto& s) { return s.get() == sink; });
}

void MemoryHub::Write(std::vector<Op> ops) {
  std::lock_guard lock(mu_);
  auto batch = std::make_shared<const Batch>(master_.Write(std::move(ops)));
  for (const auto& sink : sinks_) sink->OnBatches({StreamBatch{batch, nullptr}});
}

KeyValueMap MemoryHub::Data() {
  std::lock_guard lock(mu_);
  return master_.data();
}

uint64_t MemoryHub::seq() {
  std::lock_guard lock(mu_);
  return master_.seq();
}

size_t MemoryHub::subscribers() {
  std::lock_guard lock(mu_);
  return sinks_.size();
}

FollowerHooks MemoryFollowerStore::Hooks() {
  std::lock_guard lock(mu_);
  FollowerHooks inner = follower_.Hooks(&rng_);
  FollowerHooks h;
  h.write = [this, f = inner.write](const ApplyRequest& request) {
    std::lock_guard l(mu_);
    Status s = f(request);
    changed_.notify_all();
    return s;
  };
  h.snapshot = [this, f = inner.snapshot] {
    std::lock_guard l(mu_);
    return f();
  };
  h.random_bytes = [this, f = inner.random_bytes](uint8_t* out, size_t n) {
    std::lock_guard l(mu_);
    f(out, n);
  };
  return h;
}

FollowerState MemoryFollowerStore::State() {
  std::lock_guard lock(mu_);
  return follower_.state();
}

KeyValueMap MemoryFollowerStore::Data() {
  std::lock_guard lock(mu_);
  return follower_.data();
}

void MemoryFollowerStore::Edit(const std::function<void(MemoryFollower&)>& fn) {
  std::lock_guard lock(mu_);
  fn(follower_);
}

bool MemoryFollowerStore::WaitForData(const KeyValueMap& expected,
                                      std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, timeout, [&] { return follower_.data() == expected; });
}

}  // namespace sdiff::testing
