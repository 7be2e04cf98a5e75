// Descriptor exhaustion and process CPU time (see descriptors.h).
#include "test/support/descriptors.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

namespace sdiff::testing {

DescriptorExhaustion::DescriptorExhaustion() {
  queued_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

bool DescriptorExhaustion::ConnectQueued(uint16_t port) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return queued_ >= 0 && connect(queued_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0;
}

void DescriptorExhaustion::Release() {
  for (int fd : taken_) close(fd);
  taken_.clear();
  if (queued_ >= 0) close(queued_);
  queued_ = -1;
  if (lowered_) setrlimit(RLIMIT_NOFILE, &old_);
  lowered_ = false;
}

namespace {

std::chrono::nanoseconds ProcessCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

}  // namespace

std::chrono::milliseconds CpuTimeOver(std::chrono::milliseconds window) {
  auto before = ProcessCpuTime();
  std::this_thread::sleep_for(window);
  return std::chrono::duration_cast<std::chrono::milliseconds>(ProcessCpuTime() - before);
}

}  // namespace sdiff::testing
