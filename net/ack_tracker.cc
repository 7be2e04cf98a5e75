// AckTracker: followers' acknowledged positions and the waits on them.
#include "net/ack_tracker.h"

#include <utility>
#include <vector>

namespace sdiff::net {

size_t AckTracker::CountLocked(uint64_t seq) const {
  size_t n = 0;
  for (const auto& [follower, acked] : acked_) n += acked >= seq ? 1 : 0;
  return n;
}

size_t AckTracker::CountAt(uint64_t seq) const {
  MutexLock lock(&mu_);
  return CountLocked(seq);
}

void AckTracker::Set(const void* follower, uint64_t acked_seq) {
  std::vector<std::function<void()>> ready;
  {
    MutexLock lock(&mu_);
    uint64_t& acked = acked_[follower];
    if (acked == acked_seq) return;
    acked = acked_seq;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (CountLocked(it->second.seq) >= it->second.count) {
        ready.push_back(std::move(it->second.done));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    changed_.SignalAll();
  }
  for (auto& done : ready) done();
}

void AckTracker::Remove(const void* follower) {
  MutexLock lock(&mu_);
  acked_.erase(follower);
}

bool AckTracker::Wait(uint64_t seq, size_t count, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (CountLocked(seq) < count) {
    if (!changed_.WaitUntil(deadline) && CountLocked(seq) < count) return false;
  }
  return true;
}

uint64_t AckTracker::OnReached(uint64_t seq, size_t count, std::function<void()> done) {
  {
    MutexLock lock(&mu_);
    if (CountLocked(seq) < count) {
      uint64_t ticket = next_ticket_++;
      waiters_.emplace(ticket, Waiter{seq, count, std::move(done)});
      return ticket;
    }
  }
  done();
  return 0;
}

void AckTracker::Cancel(uint64_t ticket) {
  MutexLock lock(&mu_);
  waiters_.erase(ticket);
}

}  // namespace sdiff::net
