// ScanIntoTree: one pass over a snapshot, paced when a rate is set. Keys go
// into the tree in groups whose paths are prefetched together
// (plugin/tree_prefetch.h).
#include "plugin/tree_scan.h"

#include <rocksdb/db.h>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "plugin/rocks_status.h"
#include "plugin/tree_prefetch.h"

namespace sdiff::plugin {
namespace {

// Sleeps as long as reading `bytes` since `start` ran ahead of `rate` bytes/s.
void Pace(std::chrono::steady_clock::time_point start, uint64_t bytes, uint64_t rate) {
  if (rate == 0) return;
  auto due = start + std::chrono::microseconds(bytes * 1'000'000 / rate);
  std::this_thread::sleep_until(due);
}

// Keys read ahead and put into the tree together (as BatchLog applies a
// batch's ops); the copies are reused, so a group costs no allocation.

class GroupedPuts {
 public:
  explicit GroupedPuts(MerkleTree* tree) : tree_(tree) {}

  Status Add(FamilyTag tag, rocksdb::Slice key, rocksdb::Slice value) {
    Entry& e = entries_[count_++];
    e.tag = tag;
    e.key.assign(key.data(), key.size());
    e.value.assign(value.data(), value.size());
    return count_ == kPrefetchGroup ? Flush() : Status::OK();
  }

  Status Flush() {
    PrefetchGroupAt(*tree_, std::span<const Entry>(entries_, count_), 0, [](const Entry& e) {
      return std::optional(std::pair<FamilyTag, std::string_view>(e.tag, e.key));
    });
    Status s;
    for (size_t i = 0; i < count_ && s.ok(); ++i) {
      s = tree_->Put(entries_[i].tag, entries_[i].key, entries_[i].value);
    }
    count_ = 0;
    return s;
  }

 private:
  struct Entry {
    FamilyTag tag = 0;
    std::string key, value;
  };
  MerkleTree* tree_;
  Entry entries_[kPrefetchGroup];
  size_t count_ = 0;
};

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
  GroupedPuts puts(tree);
  for (const auto& [tag, handle] : families) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, handle));
    for (it->SeekToFirst(); it->Valid() && result.ok(); it->Next()) {
      rocksdb::Slice key = it->key();
      rocksdb::Slice value = it->value();
      result = puts.Add(tag, key, value);
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
  if (result.ok()) result = puts.Flush();
  if (options.progress) {
    progress.done = keys;
    progress.finished = true;
    options.progress(progress);
  }
  return result;
}

}  // namespace sdiff::plugin
