// Descriptor exhaustion for tests of what a server does when accept fails
// with EMFILE, and the process's CPU time, to tell a backoff from a busy loop.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <vector>

namespace sdiff::testing {

// True where the sanitizer itself needs free descriptors, so a test cannot
// exhaust them: UBSan's vptr check, the first time it meets a type on any
// thread, probes memory through pipe(), which fails while the table is full,
// and reports an invalid vptr.
#ifdef SDIFF_UBSAN_VPTR
inline constexpr bool kDescriptorsNeededBySanitizer = true;
#else
inline constexpr bool kDescriptorsNeededBySanitizer = false;
#endif

// While it lives (or until Release), the process has no file descriptor to
// spare: RLIMIT_NOFILE's soft limit is lowered (to at most 4096, so filling
// the table is quick) and every free slot below it is taken. Descriptors
// made before it keep working. Each test runs in its own process under
// CTest; the limit is restored all the same.
class DescriptorExhaustion {
 public:
  DescriptorExhaustion();
  ~DescriptorExhaustion() { Release(); }
  DescriptorExhaustion(const DescriptorExhaustion&) = delete;
  DescriptorExhaustion& operator=(const DescriptorExhaustion&) = delete;

  bool exhausted() const { return exhausted_; }  // the last open failed with EMFILE
  // Connects to 127.0.0.1:`port` with a socket made before the table filled:
  // the kernel completes the connection and queues it for the listener,
  // whose accept then fails. False (errno set) if it could not.
  bool ConnectQueued(uint16_t port);
  void Release();  // frees the slots (and that socket), restores the limit

 private:
  int queued_ = -1;  // the socket ConnectQueued uses
  rlimit old_{};
  bool lowered_ = false;
  bool exhausted_ = false;
  std::vector<int> taken_;
};

// Sleeps through `window` and returns the CPU time every thread of this
// process used meanwhile: a busy loop shows, a backoff does not.
std::chrono::milliseconds CpuTimeOver(std::chrono::milliseconds window);

}  // namespace sdiff::testing
