// StopSignal: how a thread that works once a period (the self-audit's, the
// progress sampler's) learns that it must stop, without waiting out the
// period.
//
//   while (!stop_.WaitFor(period)) DoWork();   // the thread
//   stop_.Stop(); thread_.join();               // its owner
#pragma once

#include <chrono>

#include "net/mutex.h"
#include "net/thread_annotations.h"

namespace sdiff::net {

class StopSignal {
 public:
  // Any thread; every WaitFor returns true from then on.
  void Stop() {
    {
      MutexLock lock(&mu_);
      stop_ = true;
    }
    cv_.SignalAll();
  }

  // Waits up to `period`, less if Stop is called; true once stopped.
  bool WaitFor(std::chrono::steady_clock::duration period) {
    const auto deadline = std::chrono::steady_clock::now() + period;
    MutexLock lock(&mu_);
    while (!stop_ && cv_.WaitUntil(deadline)) {
    }
    return stop_;
  }

 private:
  Mutex mu_;
  CondVar cv_{&mu_};
  bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace sdiff::net
