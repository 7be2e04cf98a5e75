// WaitUntil: the tests' way to wait for something another thread does, with a
// deadline instead of a sleep-and-hope.
#pragma once

#include <chrono>
#include <thread>

namespace sdiff::testing {

// Polls `condition` until it holds or `timeout` passes; returns its last answer.
template <typename Condition, typename Rep, typename Period>
bool WaitUntil(Condition condition, std::chrono::duration<Rep, Period> timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

}  // namespace sdiff::testing
