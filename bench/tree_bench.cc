// `sdiff-bench tree`: insert, overwrite, erase and snapshot-held insert rates,
// snapshot() cost, local diff time and tree memory per key, for 16-byte random
// keys and 100-byte values; writes one by one or in groups (--group).
#include "bench/tree_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "bench/bench_util.h"
#include "engine/merkle_tree.h"
#include "engine/node_slabs.h"

namespace sdiff::bench {
namespace {

constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 100;
constexpr size_t kDiffCount = 1000;
constexpr size_t kSnapshotEvery = 1000;  // inserts between snapshots in the snapshot-held run

struct TreeResult {
  size_t n = 0;
  double insert_per_s = 0;
  double overwrite_per_s = 0;
  double erase_per_s = 0;
  double insert_with_snapshot_per_s = 0;
  double snapshot_ns = 0;
  double diff_1000_ms = 0;
  double bytes_per_key = 0;
  size_t diff_found = 0;
};

void Check(const Status& s) {
  if (!s.ok()) {
    fmt::print(stderr, "sdiff-bench: {}\n", s.ToString());
    std::exit(1);
  }
}

// Runs write(i) for every i in [0, n), in order, `group` at a time: with
// group > 1 the paths of a group's keys are prefetched first.
template <typename Write>
void Apply(const TreeView& tree, const std::vector<std::string>& keys, size_t n, size_t group,
           const Write& write) {
  std::vector<Hash128> hashes(group);
  for (size_t begin = 0; begin < n; begin += group) {
    const size_t end = std::min(n, begin + group);
    if (group > 1) {
      for (size_t i = begin; i < end; ++i) hashes[i - begin] = tree.hasher()(0, keys[i]);
      tree.PrefetchPaths({hashes.data(), end - begin});
    }
    for (size_t i = begin; i < end; ++i) write(i);
  }
}

TreeResult Measure(size_t n, size_t group) {
  TreeResult r;
  r.n = n;
  std::vector<std::string> keys = RandomStrings(n, kKeySize, 42 + n);
  ValuePool values(kValueSize, 7);

  // Insert into an empty tree; the allocator's count of bytes in use before and
  // after gives the memory, of which the keys' own bytes are subtracted. Node
  // slabs count whole, used or free; free blocks a tree of an earlier size
  // left in them, which this tree may reuse, are counted too.
  MerkleTree tree;
  size_t slab_free_before = node_slabs::GetStats().free_bytes;
  size_t heap_before = HeapInUse();
  double t0 = WallSeconds();
  Apply(tree, keys, n, group, [&](size_t i) { Check(tree.Put(0, keys[i], values.Get(i))); });
  double t1 = WallSeconds();
  size_t heap_after = HeapInUse();
  size_t slab_free_after = node_slabs::GetStats().free_bytes;
  r.insert_per_s = n / (t1 - t0);
  r.bytes_per_key = (static_cast<double>(heap_after) - heap_before +
                     (static_cast<double>(slab_free_before) - slab_free_after)) /
                        n -
                    kKeySize;

  t0 = WallSeconds();
  Apply(tree, keys, n, group, [&](size_t i) { Check(tree.Put(0, keys[i], values.Get(i, 1))); });
  r.overwrite_per_s = n / (WallSeconds() - t0);

  // snapshot() and its release, averaged over many.
  constexpr int kSnapshots = 1'000'000;
  t0 = WallSeconds();
  for (int i = 0; i < kSnapshots; ++i) {
    TreeView view = tree.Snapshot();
    KeepAlive(view.size());
  }
  r.snapshot_ns = (WallSeconds() - t0) / kSnapshots * 1e9;

  // Local diff of two independently built trees differing in 1,000 keys:
  // a third changed values, a third only in `tree`, a third only in `other`.
  {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(n));
    MerkleTree other;
    size_t changed = kDiffCount / 3, missing = kDiffCount / 3;
    for (size_t idx : order) {
      if (idx < changed) {
        Check(other.Put(0, keys[idx], values.Get(idx, 2)));
      } else if (idx >= changed + missing) {
        Check(other.Put(0, keys[idx], values.Get(idx, 1)));
      }
    }
    std::vector<std::string> extra = RandomStrings(kDiffCount - changed - missing, kKeySize, 99);
    for (size_t i = 0; i < extra.size(); ++i) Check(other.Put(0, extra[i], values.Get(i)));
    double best = 1e9;
    for (int rep = 0; rep < 5; ++rep) {
      t0 = WallSeconds();
      std::vector<DiffEntry> diff = Diff(tree, other);
      best = std::min(best, WallSeconds() - t0);
      r.diff_found = diff.size();
    }
    r.diff_1000_ms = best * 1e3;
  }

  t0 = WallSeconds();
  Apply(tree, keys, n, group, [&](size_t i) { tree.Erase(0, keys[i]); });
  r.erase_per_s = n / (WallSeconds() - t0);

  // Insert from empty again while a snapshot is always held, retaken every
  // kSnapshotEvery inserts as a diff running beside the stream would.
  {
    MerkleTree fresh;
    TreeView held = fresh.Snapshot();
    t0 = WallSeconds();
    Apply(fresh, keys, n, group, [&](size_t i) {
      if (i % kSnapshotEvery == 0) held = fresh.Snapshot();
      Check(fresh.Put(0, keys[i], values.Get(i)));
    });
    r.insert_with_snapshot_per_s = n / (WallSeconds() - t0);
  }
  return r;
}

}  // namespace

int RunTreeBench(const TreeBenchOptions& options) {
  std::vector<TreeResult> results;
  if (!options.json) {
    if (options.group > 1) {
      fmt::print("writes {} at a time, their paths prefetched\n", options.group);
    }
    fmt::print("{:>10} {:>12} {:>12} {:>12} {:>14} {:>11} {:>10} {:>10}\n", "n", "insert/s",
               "overwrite/s", "erase/s", "ins+snap/s", "snapshot", "diff 1000", "B/key");
  }
  int rc = 0;
  for (size_t n : options.sizes) {
    TreeResult r = Measure(n, options.group);
    if (r.diff_found != kDiffCount) {
      fmt::print(stderr, "sdiff-bench: diff found {} differences, expected {}\n", r.diff_found,
                 kDiffCount);
      rc = 1;
    }
    results.push_back(r);
    if (!options.json) {
      fmt::print(
          "{:>10} {:>12.0f} {:>12.0f} {:>12.0f} {:>14.0f} {:>8.1f} ns {:>7.2f} ms {:>10.1f}\n", r.n,
          r.insert_per_s, r.overwrite_per_s, r.erase_per_s, r.insert_with_snapshot_per_s,
          r.snapshot_ns, r.diff_1000_ms, r.bytes_per_key);
      std::fflush(stdout);
    }
  }
  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"tree\", \"key_bytes\": {}, \"value_bytes\": {}, \"group\": {}, "
        "\"results\": [",
        kKeySize, kValueSize, options.group);
    for (size_t i = 0; i < results.size(); ++i) {
      const TreeResult& r = results[i];
      fmt::print(
          "{}{{\"n\": {}, \"insert_per_s\": {:.0f}, \"overwrite_per_s\": {:.0f}, "
          "\"erase_per_s\": {:.0f}, \"insert_with_snapshot_per_s\": {:.0f}, "
          "\"snapshot_ns\": {:.2f}, \"diff_1000_ms\": {:.3f}, \"bytes_per_key\": {:.2f}}}",
          i ? ", " : "", r.n, r.insert_per_s, r.overwrite_per_s, r.erase_per_s,
          r.insert_with_snapshot_per_s, r.snapshot_ns, r.diff_1000_ms, r.bytes_per_key);
    }
    fmt::print("]}}\n");
  }
  return rc;
}

}  // namespace sdiff::bench
