// `sdiff-bench tree`: speed and memory of the in-memory merkle tree.
#pragma once

#include <cstddef>
#include <vector>

namespace sdiff::bench {

struct TreeBenchOptions {
  std::vector<size_t> sizes = {100'000, 1'000'000};
  // Writes applied this many at a time, their paths loaded first
  // (TreeView::PrefetchPaths), as the tailer applies a batch; 1: one by one.
  size_t group = 1;
  bool json = false;
};

// Prints one result per size; returns a process exit code.
int RunTreeBench(const TreeBenchOptions& options);

}  // namespace sdiff::bench
