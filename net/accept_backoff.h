// AcceptBackoff: the pace of a listener's retries after a failed accept. A
// failure such as EMFILE (no file descriptor left) leaves the connection in
// the listen queue, so an accept re-armed at once fails again at once: a busy
// loop, and a log line each time. Instead the listener waits, 10 ms doubling
// to 1 s, logs the first failure of an episode and the recovery, and goes on
// accepting once descriptors are free again. Not thread-safe: one per
// acceptor, used on its strand.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace sdiff::net {

class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirst{10};
  static constexpr std::chrono::milliseconds kMax{1000};

  // After a failed accept: how long to wait before the next. *first: this
  // failure starts an episode (log it; the rest of the episode is quiet).
  std::chrono::milliseconds Failed(bool* first) {
    *first = failures_ == 0;
    ++failures_;
    delay_ = *first ? kFirst : std::min(delay_ * 2, kMax);
    return delay_;
  }

  // After an accept that worked: how many failed in the episode it ends
  // (0: there was none; else log the recovery).
  uint64_t Succeeded() {
    uint64_t failed = failures_;
    failures_ = 0;
    return failed;
  }

 private:
  uint64_t failures_ = 0;  // in the current episode
  std::chrono::milliseconds delay_{0};
};

}  // namespace sdiff::net
