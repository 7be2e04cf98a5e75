// ScanIntoTree: one pass over a snapshot, paced when a rate is set.
#include "plugin/tree_scan.h"

#include <rocksdb/db.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "plugin/rocks_status.h"

namespace sdiff::plugin {
namespace {

// Sleeps as long as reading `bytes` since `start` ran ahead of `rate` bytes/s.
void Pace(std::chrono::steady_clock::time_point start, uint64_t bytes, uint64_t rate) {
  if (rate == 0) return;
  auto due = start + std::chrono::microseconds(bytes * 1'000'000 / rate);
  std::this_thread::sleep_until(due);
}

}  // namespace

Status ScanIntoTree(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                    const TaggedFamilies& families, const TreeScanOptions& options,
                    MerkleTree* tree) {
  constexpr uint64_t kReportEvery = 1 << 16;
  Progress progress{Progress::Kind::kTreeBuild};
  if (options.progress) {
    for (const auto& [tag, handle] : families) {
      uint64_t n = 0;
      if (db->GetIntProperty(handle, "rocksdb.estimate-num-keys", &n)) progress.total += n;
    }
  }
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  read.fill_cache = false;
  read.readahead_size = 2 << 20;  // one pass over every file: read it in large pieces
  const auto start = std::chrono::steady_clock::now();
  constexpr uint64_t kPaceEvery = 1 << 20;
  uint64_t bytes = 0;
  uint64_t paced = 0;  // bytes when the scan last paced itself
  uint64_t keys = 0;
  Status result;
  for (const auto& [tag, handle] : families) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, handle));
    for (it->SeekToFirst(); it->Valid() && result.ok(); it->Next()) {
      rocksdb::Slice key = it->key();
      rocksdb::Slice value = it->value();
      result = tree->Put(tag, key.ToStringView(), value.ToStringView());
      bytes += key.size() + value.size();
      if (++keys % kReportEvery == 0 && options.progress) {
        progress.done = keys;
        options.progress(progress);
      }
      if (bytes - paced >= kPaceEvery) {
        if (options.cancel != nullptr && options.cancel->load()) {
          result = Status::Aborted("the scan was cancelled (shutting down)");
          break;
        }
        Pace(start, bytes, options.max_bytes_per_second);
        paced = bytes;
      }
    }
    if (result.ok() && !it->status().ok()) {
      result = FromRocks(it->status(), "cannot scan " + db->GetName() + ", column family '" +
                                           handle->GetName() + "'");
    }
    if (!result.ok()) break;
  }
  if (options.progress) {
    progress.done = keys;
    progress.finished = true;
    options.progress(progress);
  }
  return result;
}

}  // namespace sdiff::plugin
