// AckTracker: how far each connected follower is known to hold the master's
// writes (ServerSession::acked_seq), for waits on replication:
// Master::WaitForFollowers blocks a caller's thread on it, and a session
// with min_acks asks it to call back once a writer's write has reached
// enough followers. The drivers report from their strands; nothing here
// polls. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>

#include "net/mutex.h"
#include "net/thread_annotations.h"

namespace sdiff::net {

class AckTracker {
 public:
  // `follower` (any unique key, e.g. its driver) holds every write up to
  // `acked_seq`. Runs the callbacks this completes, on this thread, after
  // releasing the lock.
  void Set(const void* follower, uint64_t acked_seq);
  void Remove(const void* follower);  // disconnected: counts no more
  // Followers holding `seq`.
  size_t CountAt(uint64_t seq) const;
  // Blocks the calling thread until `count` followers hold `seq` (true) or
  // `timeout` passes (false). Never call it on an io or database thread.
  bool Wait(uint64_t seq, size_t count, std::chrono::milliseconds timeout);
  // Calls `done` once `count` followers hold `seq`: now, on this thread
  // (returns 0), or later from the Set that makes it so (returns a ticket
  // for Cancel). `done` must not call back into the tracker.
  uint64_t OnReached(uint64_t seq, size_t count, std::function<void()> done);
  // Drops a callback not yet run; one already taken to run still runs.
  void Cancel(uint64_t ticket);

 private:
  struct Waiter {
    uint64_t seq;
    size_t count;
    std::function<void()> done;
  };
  size_t CountLocked(uint64_t seq) const REQUIRES(mu_);

  mutable Mutex mu_;
  CondVar changed_{&mu_};
  std::map<const void*, uint64_t> acked_ GUARDED_BY(mu_);
  std::map<uint64_t, Waiter> waiters_ GUARDED_BY(mu_);
  uint64_t next_ticket_ GUARDED_BY(mu_) = 1;
};

}  // namespace sdiff::net
