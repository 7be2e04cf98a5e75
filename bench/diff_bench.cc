// `sdiff-bench diff`: for n keys (16-byte keys, 100-byte values) and d random
// differences (a third changed values, a third only on the master, a third
// only on the follower), one diff from SyncRequest to SyncDone between a
// ServerSession and a ClientSession joined in memory. Protocol bytes are all
// bytes both ways minus the keys and values the repair carried.
#include "bench/diff_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "bench/bench_util.h"
#include "engine/testing/link.h"
#include "engine/testing/memory_replica.h"

namespace sdiff::bench {
namespace {

using testing::KeyValueMap;

constexpr size_t kKeySize = 16;
constexpr size_t kValueSize = 100;
constexpr size_t kWriteBatch = 1000;

struct DiffResult {
  size_t n = 0, d = 0;
  int round_trips = 0;
  int retries = 0;
  uint64_t bytes_to_master = 0, bytes_to_follower = 0;
  double overhead_bytes_per_diff = 0;
  double cpu_ms = 0;
  bool equal = false;
};

// Tells a profiler when the diff starts and stops (DiffBenchOptions::perf_control).
void PerfControl(std::FILE* fifo, const char* command) {
  if (fifo == nullptr) return;
  std::fputs(command, fifo);
  std::fflush(fifo);
}

DiffResult Measure(testing::MemoryMaster& master, size_t n, size_t d, uint64_t seed,
                   std::FILE* perf_control) {
  DiffResult r;
  r.n = n;
  r.d = d;
  std::mt19937_64 rng(seed);
  ValuePool values(kValueSize, seed);

  // The follower: the master's data with d differences planted at random keys.
  KeyValueMap data = master.data();
  std::vector<const KeyValueMap::value_type*> entries;
  entries.reserve(data.size());
  for (const auto& e : master.data()) entries.push_back(&e);
  std::shuffle(entries.begin(), entries.end(), rng);
  size_t changed = d / 3, missing = d / 3, extra = d - changed - missing;
  for (size_t i = 0; i < changed; ++i) data[entries[i]->first] = std::string(values.Get(i, 3));
  for (size_t i = changed; i < changed + missing; ++i) data.erase(entries[i]->first);
  std::vector<std::string> extra_keys = RandomStrings(extra, kKeySize, seed + 1);
  for (size_t i = 0; i < extra; ++i) data[{0, extra_keys[i]}] = std::string(values.Get(i, 4));
  testing::MemoryFollower follower;
  follower.Load(std::move(data));
  // It followed this master up to now, so it resumes and then verifies with one diff.
  follower.SetState(FollowerState{master.id(), master.seq(), false, 0, ""});

  testing::Link link(&master, &follower, &rng);
  link.Start();
  link.DeliverToMaster(SIZE_MAX);    // Hello
  link.DeliverToFollower(SIZE_MAX);  // Challenge
  link.DeliverToMaster(SIZE_MAX);    // Auth; Welcome is now in flight
  // Everything sent so far, the Welcome included, is handshake: count from here.
  uint64_t base_to_follower = link.bytes_to_follower();
  uint64_t base_to_master = link.bytes_to_master();
  PerfControl(perf_control, "enable\n");
  double cpu0 = CpuSeconds();
  link.RunUntilQuiet();
  r.cpu_ms = (CpuSeconds() - cpu0) * 1e3;
  PerfControl(perf_control, "disable\n");
  r.bytes_to_follower = link.bytes_to_follower() - base_to_follower;
  r.bytes_to_master = link.bytes_to_master() - base_to_master;
  r.round_trips = link.stats().round_trips;
  r.retries = link.stats().retries;
  double payload = static_cast<double>(link.stats().repair_payload_bytes);
  r.overhead_bytes_per_diff =
      d == 0 ? 0 : (r.bytes_to_follower + r.bytes_to_master - payload) / static_cast<double>(d);
  r.equal = !link.closed() && follower.data() == master.data() && link.stats().syncs == 1;
  return r;
}

}  // namespace

int RunDiffBench(const DiffBenchOptions& options) {
  std::vector<DiffResult> results;
  int rc = 0;
  std::FILE* perf_control = nullptr;
  if (!options.perf_control.empty()) {
    perf_control = std::fopen(options.perf_control.c_str(), "w");
    if (perf_control == nullptr) {
      fmt::print(stderr, "sdiff-bench: cannot open {}\n", options.perf_control);
      return 1;
    }
  }
  if (!options.json) {
    fmt::print("{:>9} {:>7} {:>6} {:>8} {:>14} {:>14} {:>16} {:>9}\n", "n", "d", "RTs", "retries",
               "to master B", "to follower B", "overhead B/diff", "CPU ms");
  }
  for (size_t n : options.sizes) {
    testing::MemoryMaster master("bench-master");
    std::vector<std::string> keys = RandomStrings(n, kKeySize, 42 + n);
    ValuePool values(kValueSize, 7);
    std::vector<Op> batch;
    for (size_t i = 0; i < n; ++i) {
      batch.push_back(Op{OpKind::kPut, 0, keys[i], std::string(values.Get(i))});
      if (batch.size() == kWriteBatch || i + 1 == n) master.Write(std::exchange(batch, {}));
    }
    master.PurgeLogBefore(master.seq());
    for (size_t d : options.diffs) {
      if (d > n / 2) continue;
      DiffResult r;
      std::vector<double> cpu_ms;
      for (int i = 0; i < std::max(1, options.repeat); ++i) {
        r = Measure(master, n, d, n * 31 + d, perf_control);
        if (!r.equal) {
          fmt::print(stderr, "sdiff-bench: n={} d={}: follower did not converge\n", n, d);
          rc = 1;
        }
        cpu_ms.push_back(r.cpu_ms);
      }
      std::sort(cpu_ms.begin(), cpu_ms.end());
      r.cpu_ms = cpu_ms[cpu_ms.size() / 2];
      results.push_back(r);
      if (!options.json) {
        fmt::print("{:>9} {:>7} {:>6} {:>8} {:>14} {:>14} {:>16.1f} {:>9.2f}\n", r.n, r.d,
                   r.round_trips, r.retries, r.bytes_to_master, r.bytes_to_follower,
                   r.overhead_bytes_per_diff, r.cpu_ms);
        std::fflush(stdout);
      }
    }
  }
  if (options.json) {
    fmt::print("{{\"benchmark\": \"diff\", \"results\": [");
    for (size_t i = 0; i < results.size(); ++i) {
      const DiffResult& r = results[i];
      fmt::print(
          "{}{{\"n\": {}, \"d\": {}, \"round_trips\": {}, \"retries\": {}, \"bytes_to_master\": "
          "{}, "
          "\"bytes_to_follower\": {}, \"overhead_bytes_per_diff\": {:.1f}, \"cpu_ms\": {:.2f}}}",
          i ? ", " : "", r.n, r.d, r.round_trips, r.retries, r.bytes_to_master, r.bytes_to_follower,
          r.overhead_bytes_per_diff, r.cpu_ms);
    }
    fmt::print("]}}\n");
  }
  if (perf_control != nullptr) std::fclose(perf_control);
  return rc;
}

}  // namespace sdiff::bench
