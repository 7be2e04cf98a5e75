// `sdiff-bench diff`: the merkle diff protocol between a master and a follower
// session over an in-memory channel: round trips, bytes, CPU.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sdiff::bench {

struct DiffBenchOptions {
  std::vector<size_t> sizes = {10'000, 100'000, 1'000'000};
  std::vector<size_t> diffs = {0, 1, 10, 100, 1000, 10000};
  bool json = false;
  // Diffs measured for each (n, d): the CPU reported is their median (bytes
  // and round trips are the same in every one: the same seed).
  int repeat = 1;
  // A FIFO that `perf record --control=fifo:FIFO -D -1` reads: "enable" is
  // written to it before each diff and "disable" after, so a profile holds
  // the diff alone, not the building of the trees. Empty: none.
  std::string perf_control;
};

int RunDiffBench(const DiffBenchOptions& options);

}  // namespace sdiff::bench
