// `sdiff-bench diff`: the merkle diff protocol between a master and a follower
// session over an in-memory channel: round trips, bytes, CPU.
#pragma once

#include <cstddef>
#include <vector>

namespace sdiff::bench {

struct DiffBenchOptions {
  std::vector<size_t> sizes = {10'000, 100'000, 1'000'000};
  std::vector<size_t> diffs = {0, 1, 10, 100, 1000, 10000};
  bool json = false;
};

int RunDiffBench(const DiffBenchOptions& options);

}  // namespace sdiff::bench
