// `sdiff-bench bootstrap`: how long an empty follower takes to receive a
// master's whole database, against `cp -r` of the master's directory.
//
// The master DB gets N keys (16-byte random keys, 100-byte values, written
// without WAL in batches of 1,000), is flushed and compacted (so no background
// work runs while timing), and a Master is attached. Two empty followers are
// then brought up one after the other, each timed from Follower::Open on an
// empty directory until its data equals the master's:
//   clone:   the default; Open copies the master's files (plugin/clone.h)
//            and returns with the copy open: equal when Open returns;
//   entries: clone_files off; the master streams its keys (a bootstrap):
//            equal when the follower's status counts N keys.
// Each follower's data is then compared with a full scan of the master's
// (untimed). "streaming" is the time until it is connected at the master's
// sequence, "tree" until it also has its tree (a clone builds it behind the
// stream, after Open).
// The clone runs --repeat times, into fresh directories. Then the master DB is
// closed and `cp -r` of its directory is timed as often; medians are compared.
// All read the master's files from the page cache (they were just written);
// `cp -r` syncs nothing, while the clone fsyncs each file it writes and the
// entry bootstrap fsyncs the SST files RocksDB flushes.
#include <fmt/format.h>
#include <malloc.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "bench/plugin_bench.h"
#include "bench/rocks_util.h"
#include "plugin/follower.h"
#include "plugin/master.h"

namespace sdiff::bench {
namespace {

using namespace std::chrono_literals;

constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 100;
constexpr size_t kLoadBatch = 1000;
constexpr auto kBootstrapDeadline = 110s;

uint64_t DirectoryBytes(const std::string& path) {
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

// The first difference between two column families, or "" when equal.
std::string Compare(rocksdb::DB* a, rocksdb::ColumnFamilyHandle* ha, rocksdb::DB* b,
                    rocksdb::ColumnFamilyHandle* hb, size_t* count) {
  std::unique_ptr<rocksdb::Iterator> ia(a->NewIterator(rocksdb::ReadOptions(), ha));
  std::unique_ptr<rocksdb::Iterator> ib(b->NewIterator(rocksdb::ReadOptions(), hb));
  *count = 0;
  for (ia->SeekToFirst(), ib->SeekToFirst(); ia->Valid() && ib->Valid();
       ia->Next(), ib->Next(), ++*count) {
    if (ia->key() != ib->key()) return "key #" + std::to_string(*count) + " differs";
    if (ia->value() != ib->value()) return "value #" + std::to_string(*count) + " differs";
  }
  if (!ia->status().ok() || !ib->status().ok()) return "scan failed";
  if (ia->Valid() != ib->Valid()) return "one side has more keys";
  return "";
}

struct BootstrapRun {
  double equal_s = 0;      // Open until the status shows every key
  double streaming_s = 0;  // Open until connected at the master's sequence
  double tree_s = 0;       // Open until its tree is built (a clone builds it behind the stream)
  double cpu_s = 0;
  uint64_t dir_bytes = 0;
  uint64_t clone_bytes = 0;
  uint64_t clone_seq = 0;
  std::string error;  // empty: the follower came up by the expected path, equal
};

BootstrapRun RunFollower(rocksdb::DB* db, const std::string& path, plugin::Master* master,
                         bool clone, size_t n) {
  BootstrapRun run;
  const char* how = clone ? "clone" : "entries";
  plugin::FollowerOptions follower_options;
  follower_options.db_path = path;
  follower_options.clone_files = clone;
  follower_options.client.master = fmt::format("127.0.0.1:{}", master->port());
  follower_options.client.logger = BenchLogger("follower");
  std::unique_ptr<plugin::Follower> follower;
  const uint64_t master_seq = db->GetLatestSequenceNumber();
  double cpu0 = CpuSeconds();
  double t0 = WallSeconds();
  Check(plugin::Follower::Open(follower_options, &follower), "opening the follower");
  // Equal: a clone holds the master's data at its sequence once Open returns
  // (checked below); an entry bootstrap once its status counts every key.
  bool done = clone
                  ? follower->status().cloned && follower->status().clone_seq >= master_seq
                  : follower->WaitFor([n](const plugin::FollowerStatus& s) { return s.keys >= n; },
                                      kBootstrapDeadline);
  run.equal_s = WallSeconds() - t0;
  run.cpu_s = CpuSeconds() - cpu0;  // both sides: they share this process
  bool streaming = follower->WaitFor(
      [master_seq](const plugin::FollowerStatus& s) {
        return s.connected && s.applied_seq >= master_seq;
      },
      kBootstrapDeadline);
  run.streaming_s = WallSeconds() - t0;
  bool built = follower->WaitFor(
      [n](const plugin::FollowerStatus& s) { return s.tree_built && s.keys >= n; },
      kBootstrapDeadline);
  run.tree_s = WallSeconds() - t0;
  plugin::FollowerStatus status = follower->status();
  run.clone_bytes = status.clone_bytes;
  run.clone_seq = status.clone_seq;
  if (!done || !streaming || !built) {
    run.error = fmt::format(
        "{}: the follower has {} of {} keys (cloned {} at sequence {}, master's {}), streaming {}, "
        "tree built {}, after {} s ({})\n",
        how, status.keys, n, status.cloned, status.clone_seq, master_seq, streaming, built,
        kBootstrapDeadline.count(), status.last_error);
    return run;
  }
  if (clone ? !status.cloned : status.last_start != StartMode::kBootstrap) {
    run.error = fmt::format("{}: the follower came up another way (cloned {}, start mode {})\n",
                            how, status.cloned, static_cast<int>(status.last_start));
  }
  size_t compared = 0;
  std::string diff = Compare(db, db->DefaultColumnFamily(), follower->db(),
                             follower->column_family(rocksdb::kDefaultColumnFamilyName), &compared);
  if (!diff.empty() || compared != n) {
    run.error += fmt::format("{}: the follower's data differs from the master's: {} ({} keys)\n",
                             how, diff.empty() ? "count" : diff, compared);
  }
  follower.reset();
  // The next bootstrap starts with the heap as a fresh process has it (the
  // way a follower daemon bootstraps): glibc keeps the last tree's 1e6 small
  // frees unmerged, and would merge them inside the next timed DB::Open,
  // 140-200 ms on a table-loading thread (found with perf and strace).
  malloc_trim(0);
  run.dir_bytes = DirectoryBytes(path);
  return run;
}

}  // namespace

int RunBootstrapBench(const BootstrapBenchOptions& options) {
  const size_t n = options.keys;
  TempDir dir;
  const std::string master_path = dir.sub("master");
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.WAL_ttl_seconds = 3600;
  rocksdb::DB* raw = nullptr;
  Check(rocksdb::DB::Open(db_options, master_path, &raw), "opening the master DB");
  std::unique_ptr<rocksdb::DB> db(raw);

  double t0 = WallSeconds();
  {
    std::vector<std::string> keys = RandomStrings(n, kKeySize, 42 + n);
    ValuePool values(kValueSize, 7);
    rocksdb::WriteOptions bulk;
    bulk.disableWAL = true;  // a bulk load; the flush below makes it durable
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < n; ++i) {
      Check(batch.Put(keys[i], rocksdb::Slice(values.Get(i).data(), kValueSize)), "batch put");
      if (batch.Count() == kLoadBatch || i + 1 == n) {
        Check(db->Write(bulk, &batch), "loading the master");
        batch.Clear();
      }
    }
  }
  Check(db->Flush(rocksdb::FlushOptions()), "flushing the master");
  Check(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr),
        "compacting the master");
  double load_s = WallSeconds() - t0;

  plugin::MasterOptions master_options;
  master_options.server.listen = "127.0.0.1:0";
  master_options.server.logger = BenchLogger("master");
  master_options.bootstrap_min_keys = 1;  // bootstrap, not diff, whatever --keys is
  std::unique_ptr<plugin::Master> master;
  t0 = WallSeconds();
  Check(plugin::Master::Attach(db.get(), {}, master_options, &master), "attaching the master");
  double attach_s = WallSeconds() - t0;

  // The clone is short and the machine shared: time it several times (and
  // cp -r as often) and compare medians.
  std::vector<BootstrapRun> clones;
  std::vector<double> clone_times, streaming_times, tree_times;
  for (int i = 0; i < options.repeat; ++i) {
    std::string path = dir.sub("follower-clone-" + std::to_string(i));
    clones.push_back(RunFollower(db.get(), path, master.get(), true, n));
    clone_times.push_back(clones.back().equal_s);
    streaming_times.push_back(clones.back().streaming_s);
    tree_times.push_back(clones.back().tree_s);
    if (!clones.back().error.empty()) break;
    if (i + 1 < options.repeat) {
      // Each clone starts with the disk idle, as a single bootstrap would:
      // the last one's deletion written back, and a moment to settle.
      std::filesystem::remove_all(path);
      ::sync();
      std::this_thread::sleep_for(1s);
    }
  }
  BootstrapRun clone = clones.back();
  clone.equal_s = Median(clone_times);
  clone.streaming_s = Median(streaming_times);
  clone.tree_s = Median(tree_times);
  BootstrapRun entries;
  if (!options.clone_only) {
    entries = RunFollower(db.get(), dir.sub("follower-entries"), master.get(), false, n);
  }
  master.reset();
  Check(db->Close(), "closing the master DB");
  db.reset();
  if (!clone.error.empty() || !entries.error.empty()) {
    fmt::print(stderr, "sdiff-bench: {}{}\n", clone.error, entries.error);
    return 1;
  }

  uint64_t master_bytes = DirectoryBytes(master_path);
  // cp -r (the goal's baseline: page cache to page cache, nothing durable),
  // and for scale a durable copy, cp -r then sync -f, as the clone is durable.
  std::vector<double> copy_times, durable_times;
  for (int i = 0; i < 2 * options.repeat; ++i) {
    bool durable = i % 2 == 1;
    const std::string copy_path = dir.sub("copy");
    t0 = WallSeconds();
    int cp = std::system(fmt::format("cp -r '{}' '{}'{}", master_path, copy_path,
                                     durable ? fmt::format(" && sync -f '{}'", copy_path) : "")
                             .c_str());
    (durable ? durable_times : copy_times).push_back(WallSeconds() - t0);
    if (cp != 0) {
      fmt::print(stderr, "sdiff-bench: cp -r failed ({})\n", cp);
      return 1;
    }
    std::filesystem::remove_all(copy_path);
    ::sync();
    std::this_thread::sleep_for(1s);
  }
  double copy_s = Median(copy_times);
  double durable_copy_s = Median(durable_times);
  double ratio = clone.equal_s / copy_s;

  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"bootstrap\", \"keys\": {}, \"bootstrap_s\": {:.3f}, \"copy_s\": "
        "{:.3f}, \"ratio_to_copy\": {:.2f}, \"clone_streaming_s\": {:.3f}, \"clone_tree_s\": "
        "{:.3f}, "
        "\"streaming_ratio_to_copy\": {:.2f}, \"streaming_ratio_to_durable_copy\": {:.2f}, "
        "\"entries_bootstrap_s\": {:.3f}, \"entries_ratio_to_copy\": {:.2f}, "
        "\"durable_copy_s\": {:.3f}, \"ratio_to_durable_copy\": {:.2f}, "
        "\"bootstrap_cpu_s\": {:.3f}, \"master_dir_bytes\": {}, \"follower_dir_bytes\": {}}}\n",
        n, clone.equal_s, copy_s, ratio, clone.streaming_s, clone.tree_s,
        clone.streaming_s / copy_s, clone.streaming_s / durable_copy_s, entries.equal_s,
        entries.equal_s / copy_s, durable_copy_s, clone.equal_s / durable_copy_s, clone.cpu_s,
        master_bytes, clone.dir_bytes);
    return 0;
  }
  fmt::print(
      "{} keys, {}-byte keys, {}-byte values; master loaded, flushed and compacted in {:.2f} s; "
      "Master::Attach (tree build) {:.2f} s.\nbootstrap: Follower::Open on an empty directory "
      "until its data equals the master's (clone: Open returned; entries: status shows {} keys; "
      "data then compared: equal); streaming: until it is connected at the master's sequence; "
      "tree: until it has its tree too.\n",
      n, kKeySize, kValueSize, load_s, attach_s, n);
  fmt::print("{:>8} {:>10} {:>12} {:>12} {:>8} {:>14} {:>10} {:>9} {:>12} {:>12}\n", "path", "keys",
             "bootstrap s", "streaming s", "tree s", "bootstrap CPU", "cp -r s", "ratio",
             "master MiB", "follower MiB");
  for (const BootstrapRun* run : {&clone, &entries}) {
    if (run == &entries && options.clone_only) continue;
    fmt::print(
        "{:>8} {:>10} {:>12.3f} {:>12.3f} {:>8.3f} {:>12.3f} s {:>10.3f} {:>9.2f} {:>12.1f} "
        "{:>12.1f}\n",
        run == &clone ? "clone" : "entries", n, run->equal_s, run->streaming_s, run->tree_s,
        run->cpu_s, copy_s, run->equal_s / copy_s, master_bytes / 1048576.0,
        run->dir_bytes / 1048576.0);
  }
  fmt::print("clone runs (s):");
  for (double t : clone_times) fmt::print(" {:.3f}", t);
  fmt::print("; cp -r runs (s):");
  for (double t : copy_times) fmt::print(" {:.3f}", t);
  fmt::print("; the table shows medians.\n");
  fmt::print("durable copy (cp -r && sync -f) runs (s):");
  for (double t : durable_times) fmt::print(" {:.3f}", t);
  fmt::print("; median {:.3f} s: the clone takes {:.2f}x of it.\n", durable_copy_s,
             clone.equal_s / durable_copy_s);
  fmt::print(
      "clone: {} bytes of files copied, opened at master sequence {}.\nbootstrap CPU: every "
      "thread of this process (master and follower) during the bootstrap. MiB: the directories "
      "after the run (a follower's holds its WAL too).\n",
      clone.clone_bytes, clone.clone_seq);
  return 0;
}

}  // namespace sdiff::bench
