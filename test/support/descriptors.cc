// Descriptor exhaustion and process CPU time (see descriptors.h).
#include "test/support/descriptors.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace sdiff::testing {

DescriptorExhaustion::DescriptorExhaustion() {
  if (getrlimit(RLIMIT_NOFILE, &old_) != 0) return;
  rlimit low = old_;
  low.rlim_cur = std::min<rlim_t>(old_.rlim_cur, 4096);
  lowered_ = setrlimit(RLIMIT_NOFILE, &low) == 0;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      exhausted_ = errno == EMFILE;
      break;
    }
    taken_.push_back(fd);
  }
}

void DescriptorExhaustion::Release() {
  for (int fd : taken_) close(fd);
  taken_.clear();
  if (lowered_) setrlimit(RLIMIT_NOFILE, &old_);
  lowered_ = false;
}

std::chrono::nanoseconds ProcessCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace sdiff::testing
