// ScanIntoTree: a merkle tree built from a RocksDB snapshot, family by family.
// The master's tree at attach and after a gap, the follower's tree at open,
// and the reference tree of a self-audit are all built by it.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/merkle_tree.h"
#include "engine/status.h"
#include "plugin/progress.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Snapshot;
}  // namespace rocksdb

namespace sdiff::plugin {

struct TreeScanOptions {
  // Reports the build (kind kTreeBuild) every 64 Ki keys and at its end. Default: none.
  ProgressFn progress;
  // The most bytes of keys and values read per second, so that a background
  // scan (a self-audit) leaves the disk and the CPU to the application's
  // writes. 0: as fast as it can. Default: 0.
  uint64_t max_bytes_per_second = 0;
  // When set and true, the scan stops within about a MiB and fails with
  // Aborted: a background scan must not hold up a shutdown. Default: none.
  const std::atomic<bool>* cancel = nullptr;
};

using TaggedFamilies = std::vector<std::pair<FamilyTag, rocksdb::ColumnFamilyHandle*>>;

// Adds every key of `families` as of `snapshot` to *tree (whose hasher it
// keeps). `snapshot` may be null: the database as it is. A scan error fails
// it as FromRocks maps it (a Corruption stays one), naming the database and
// the column family.
Status ScanIntoTree(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                    const TaggedFamilies& families, const TreeScanOptions& options,
                    MerkleTree* tree);

}  // namespace sdiff::plugin
