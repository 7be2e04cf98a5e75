// `sdiff-bench bootstrap`: how long an empty follower takes to receive a
// master's whole database, against `cp -r` of the master's directory.
//
// The master DB gets N keys (16-byte random keys, 100-byte values, written
// without WAL in batches of 1,000), is flushed and compacted (so no background
// work runs while timing), and a Master is attached. The bootstrap is timed
// from Follower::Open on an empty directory until the follower's status shows
// N keys; the follower's data is then compared with a full scan of the
// master's (untimed). Then the master DB is closed and `cp -r` of its
// directory is timed. Both read the master's files from the page cache (they
// were just written) and neither waits for its writes to reach the disk,
// except RocksDB's own fsync of the SST files the follower flushes.
#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
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

  plugin::FollowerOptions follower_options;
  follower_options.db_path = dir.sub("follower");
  follower_options.client.master = fmt::format("127.0.0.1:{}", master->port());
  follower_options.client.logger = BenchLogger("follower");
  std::unique_ptr<plugin::Follower> follower;
  double cpu0 = CpuSeconds();
  t0 = WallSeconds();
  Check(plugin::Follower::Open(follower_options, &follower), "opening the follower");
  bool done = follower->WaitFor([n](const plugin::FollowerStatus& s) { return s.keys >= n; },
                                kBootstrapDeadline);
  double bootstrap_s = WallSeconds() - t0;
  double bootstrap_cpu_s = CpuSeconds() - cpu0;  // both sides: they share this process
  plugin::FollowerStatus status = follower->status();
  if (!done) {
    fmt::print(stderr, "sdiff-bench: the follower has {} of {} keys after {} s ({})\n", status.keys,
               n, kBootstrapDeadline.count(), status.last_error);
    return 1;
  }
  int rc = 0;
  if (status.last_start != StartMode::kBootstrap) {
    fmt::print(stderr, "sdiff-bench: the follower started by mode {}, not bootstrap\n",
               static_cast<int>(status.last_start));
    rc = 1;
  }
  size_t compared = 0;
  std::string diff = Compare(db.get(), db->DefaultColumnFamily(), follower->db(),
                             follower->column_family(rocksdb::kDefaultColumnFamilyName), &compared);
  if (!diff.empty() || compared != n) {
    fmt::print(stderr, "sdiff-bench: the follower's data differs from the master's: {} ({} keys)\n",
               diff.empty() ? "count" : diff, compared);
    rc = 1;
  }
  uint64_t follower_bytes = DirectoryBytes(follower_options.db_path);
  follower.reset();
  master.reset();
  Check(db->Close(), "closing the master DB");
  db.reset();

  const std::string copy_path = dir.sub("copy");
  uint64_t master_bytes = DirectoryBytes(master_path);
  t0 = WallSeconds();
  int cp = std::system(fmt::format("cp -r '{}' '{}'", master_path, copy_path).c_str());
  double copy_s = WallSeconds() - t0;
  if (cp != 0) {
    fmt::print(stderr, "sdiff-bench: cp -r failed ({})\n", cp);
    return 1;
  }
  double ratio = bootstrap_s / copy_s;

  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"bootstrap\", \"keys\": {}, \"bootstrap_s\": {:.3f}, \"copy_s\": "
        "{:.3f}, \"ratio_to_copy\": {:.2f}, \"bootstrap_cpu_s\": {:.3f}, \"master_dir_bytes\": {}, "
        "\"follower_dir_bytes\": {}}}\n",
        n, bootstrap_s, copy_s, ratio, bootstrap_cpu_s, master_bytes, follower_bytes);
    return rc;
  }
  fmt::print(
      "{} keys, {}-byte keys, {}-byte values; master loaded, flushed and compacted in {:.2f} s; "
      "Master::Attach (tree build) {:.2f} s.\nbootstrap: Follower::Open on an empty directory "
      "until its status shows {} keys (data then compared: {}).\n",
      n, kKeySize, kValueSize, load_s, attach_s, n, rc == 0 ? "equal" : "NOT EQUAL");
  fmt::print("{:>10} {:>12} {:>14} {:>10} {:>9} {:>12} {:>12}\n", "keys", "bootstrap s",
             "bootstrap CPU", "cp -r s", "ratio", "master MiB", "follower MiB");
  fmt::print("{:>10} {:>12.3f} {:>12.3f} s {:>10.3f} {:>9.2f} {:>12.1f} {:>12.1f}\n", n,
             bootstrap_s, bootstrap_cpu_s, copy_s, ratio, master_bytes / 1048576.0,
             follower_bytes / 1048576.0);
  fmt::print(
      "bootstrap CPU: every thread of this process (master and follower) during the bootstrap. "
      "MiB: the directories after the run (the follower's holds its WAL too).\n");
  return rc;
}

}  // namespace sdiff::bench
