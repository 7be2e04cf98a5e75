// Small measuring aids shared by the sdiff-bench scenarios: clocks, allocator
// statistics and reproducible random data.
#pragma once

#include <malloc.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace sdiff::bench {

inline double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double CpuSeconds() {  // this process, all threads
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Bytes the allocator has handed out and not taken back, chunk overhead included.
inline size_t HeapInUse() {
  struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Keeps the compiler from discarding a computed value.
template <typename T>
inline void KeepAlive(const T& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

inline std::vector<std::string> RandomStrings(size_t count, size_t length, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> out(count, std::string(length, '\0'));
  for (std::string& s : out) {
    for (size_t i = 0; i < length; i += 8) {
      uint64_t word = rng();
      for (size_t j = i; j < length && j < i + 8; ++j)
        s[j] = static_cast<char>(word >> (8 * (j - i)));
    }
  }
  return out;
}

// Values of a fixed length cut from one random pool, so a million values cost
// one megabyte; `round` picks a different value for the same index.
class ValuePool {
 public:
  ValuePool(size_t value_size, uint64_t seed)
      : value_size_(value_size), pool_(RandomStrings(1, 1 << 20, seed)[0]) {}
  std::string_view Get(size_t index, size_t round = 0) const {
    size_t offset = (index * 7919 + round * 131) % (pool_.size() - value_size_);
    return std::string_view(pool_).substr(offset, value_size_);
  }

 private:
  size_t value_size_;
  std::string pool_;
};

}  // namespace sdiff::bench
