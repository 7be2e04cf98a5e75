// `sdiff-bench tree`: speed and memory of the in-memory merkle tree.
#pragma once

#include <cstddef>
#include <vector>

namespace sdiff::bench {

struct TreeBenchOptions {
  std::vector<size_t> sizes = {100'000, 1'000'000};
  bool json = false;
};

// Prints one result per size; returns a process exit code.
int RunTreeBench(const TreeBenchOptions& options);

}  // namespace sdiff::bench
