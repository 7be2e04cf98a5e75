// Descriptor exhaustion for tests of what a server does when accept fails
// with EMFILE, and the process's CPU time, to tell a backoff from a busy loop.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <vector>

namespace sdiff::testing {

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
  void Release();                                // frees the slots, restores the limit

 private:
  rlimit old_{};
  bool lowered_ = false;
  bool exhausted_ = false;
  std::vector<int> taken_;
};

// CPU time used by every thread of this process so far.
std::chrono::nanoseconds ProcessCpuTime();

}  // namespace sdiff::testing
