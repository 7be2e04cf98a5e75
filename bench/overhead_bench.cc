// `sdiff-bench overhead`: what attaching the plugin costs the master's
// application. The same write loop (16-byte random keys, 100-byte values,
// WAL on, no fsync) runs against a plain RocksDB and against a fresh one with
// a Master attached and N Followers (same process, loopback; --followers)
// connected; the attached loop calls NotifyWrite() after each Write, as the
// docs recommend. The followers' threads run at SCHED_IDLE (unless
// --equal-follower), so they use only CPU the master leaves: deployed
// followers run on their own machines, and on a 2-core machine that separates
// what the master pays from what replicas on the same cores cost. Only the
// loop is timed. Plain and attached alternate for a few rounds, since the
// machines are noisy: rates and CPU are medians, and the ratio is the median
// of each round's attached/plain pair.
#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sched.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
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
constexpr auto kCatchUpDeadline = 60s;

std::unique_ptr<rocksdb::DB> OpenDb(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  // As the plugin's docs recommend, so flushed WAL files stay for resuming
  // followers; set for the plain DB too, so the two differ only in the plugin.
  options.WAL_ttl_seconds = 3600;
  rocksdb::DB* db = nullptr;
  Check(rocksdb::DB::Open(options, path, &db), "opening the master DB");
  return std::unique_ptr<rocksdb::DB>(db);
}

// CPU time of every thread of this process so far, by thread ID, from the
// scheduler's own accounting (nanoseconds).
std::map<std::string, uint64_t> ThreadCpuNs() {
  std::map<std::string, uint64_t> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "schedstat");
    uint64_t ns = 0;
    if (in >> ns) out[task.path().filename()] = ns;
  }
  return out;
}

// CPU spent since `before` by the threads in `tids` (those that exist now).
double CpuSince(const std::map<std::string, uint64_t>& before,
                const std::map<std::string, uint64_t>& now, const std::set<std::string>& tids) {
  uint64_t ns = 0;
  for (const std::string& tid : tids) {
    auto n = now.find(tid);
    if (n == now.end()) continue;
    auto b = before.find(tid);
    ns += n->second - (b == before.end() ? 0 : b->second);
  }
  return ns * 1e-9;
}

std::set<std::string> NewThreads(const std::map<std::string, uint64_t>& before,
                                 const std::map<std::string, uint64_t>& after) {
  std::set<std::string> out;
  for (const auto& [tid, ns] : after) {
    if (before.count(tid) == 0) out.insert(tid);
  }
  return out;
}

// The calling thread's time on a CPU and time runnable but waiting for one,
// in seconds, from the scheduler's accounting.
struct SchedTimes {
  double on_cpu = 0;
  double waiting = 0;
};
SchedTimes ThisThreadSched() {
  std::ifstream in("/proc/thread-self/schedstat");
  uint64_t on_cpu = 0, waiting = 0;
  in >> on_cpu >> waiting;
  return {on_cpu * 1e-9, waiting * 1e-9};
}

// One timed write loop; CPU figures are per put.
struct Measurement {
  double puts_per_s = 0;
  double writer_cpu_us = 0;   // the writing thread, during the loop
  double process_cpu_us = 0;  // every thread, loop start until the follower (if any) caught up
  double writer_share = 0;    // the writing thread's CPU time / the loop's wall time
  double writer_waiting = 0;  // its time runnable but not running / the loop's wall time
  double catch_up_s = 0;      // after the loop, until the follower applied everything
  // Attached: CPU from loop start until the followers caught up, by the threads
  // Master::Attach started (tailer, server) and those Follower::Open started.
  double master_cpu_us = 0;
  double follower_cpu_us = 0;
  // The share of master_cpu_us spent during the loop. A follower that lags
  // (--idle-follower) lets the server put off sending; this shows how much.
  double master_in_loop = 0;
};

// The application's loop: `keys.size()` puts in batches of `batch`. With a
// master, NotifyWrite() after each Write. Fills everything but catch-up.
Measurement WriteLoop(rocksdb::DB* db, plugin::Master* master, const std::vector<std::string>& keys,
                      const ValuePool& values, size_t batch) {
  rocksdb::WriteOptions write;  // WAL on, no fsync
  rocksdb::WriteBatch wb;
  double cpu0 = CpuSeconds(), t0 = WallSeconds();
  SchedTimes sched0 = ThisThreadSched();
  for (size_t i = 0; i < keys.size(); i += batch) {
    wb.Clear();
    for (size_t j = i; j < i + batch && j < keys.size(); ++j) {
      Check(wb.Put(keys[j], rocksdb::Slice(values.Get(j).data(), kValueSize)), "batch put");
    }
    Check(db->Write(write, &wb), "master write");
    if (master != nullptr) master->NotifyWrite();
  }
  double wall = WallSeconds() - t0;
  SchedTimes sched1 = ThisThreadSched();
  double thread = sched1.on_cpu - sched0.on_cpu;
  Measurement m;
  m.puts_per_s = keys.size() / wall;
  m.writer_cpu_us = thread / keys.size() * 1e6;
  m.process_cpu_us = (CpuSeconds() - cpu0) / keys.size() * 1e6;
  m.writer_share = thread / wall;
  m.writer_waiting = (sched1.waiting - sched0.waiting) / wall;
  return m;
}

Measurement MeasurePlain(const std::vector<std::string>& keys, const ValuePool& values,
                         size_t batch) {
  TempDir dir;
  std::unique_ptr<rocksdb::DB> db = OpenDb(dir.sub("master"));
  Measurement m = WriteLoop(db.get(), nullptr, keys, values, batch);
  Check(db->Close(), "closing the master DB");
  return m;
}

// Moves the threads `tids` to SCHED_IDLE; the threads they start inherit it.
// One that has ended since it was listed (Follower::Open's short-lived
// threads: a name lookup, the attempt to clone) needs nothing.
void MakeIdle(const std::set<std::string>& tids) {
  sched_param none{};
  for (const std::string& tid : tids) {
    if (sched_setscheduler(std::stoi(tid), SCHED_IDLE, &none) != 0 && errno != ESRCH) {
      fmt::print(stderr, "sdiff-bench: cannot make thread {} idle: {}\n", tid,
                 std::strerror(errno));
      std::exit(1);
    }
  }
}

Measurement MeasureAttached(const std::vector<std::string>& keys, const ValuePool& values,
                            size_t batch, size_t followers, bool idle_follower, int io_threads) {
  TempDir dir;
  std::unique_ptr<rocksdb::DB> db = OpenDb(dir.sub("master"));
  plugin::MasterOptions master_options;
  master_options.server.listen = "127.0.0.1:0";
  master_options.server.threads = io_threads;
  master_options.server.logger = BenchLogger("master");
  std::unique_ptr<plugin::Master> master;
  auto threads0 = ThreadCpuNs();
  Check(plugin::Master::Attach(db.get(), {}, master_options, &master), "attaching the master");
  auto threads1 = ThreadCpuNs();

  std::vector<std::unique_ptr<plugin::Follower>> replicas(followers);
  for (size_t i = 0; i < followers; ++i) {
    plugin::FollowerOptions follower_options;
    follower_options.db_path = dir.sub(fmt::format("follower-{}", i));
    follower_options.client.master = fmt::format("127.0.0.1:{}", master->port());
    follower_options.client.logger = BenchLogger("follower");
    Check(plugin::Follower::Open(follower_options, &replicas[i]), "opening a follower");
  }
  auto threads2 = ThreadCpuNs();
  std::set<std::string> master_threads = NewThreads(threads0, threads1);
  std::set<std::string> follower_threads = NewThreads(threads1, threads2);
  if (idle_follower) MakeIdle(follower_threads);
  // Connected, and past their first diff (of an empty DB), before timing starts.
  for (const auto& follower : replicas) {
    if (!follower->WaitFor(
            [](const plugin::FollowerStatus& s) { return s.connected && s.diffs > 0; }, 10s)) {
      fmt::print(stderr, "sdiff-bench: a follower did not connect: {}\n",
                 follower->status().last_error);
      std::exit(1);
    }
  }

  double cpu0 = CpuSeconds();
  auto before = ThreadCpuNs();
  Measurement r = WriteLoop(db.get(), master.get(), keys, values, batch);
  double t0 = WallSeconds();
  auto loop_end = ThreadCpuNs();
  uint64_t last = db->GetLatestSequenceNumber();
  for (const auto& follower : replicas) {
    if (!follower->WaitFor(
            [last](const plugin::FollowerStatus& s) { return s.applied_seq >= last; },
            kCatchUpDeadline)) {
      fmt::print(stderr, "sdiff-bench: a follower did not catch up within {} s\n",
                 kCatchUpDeadline.count());
      std::exit(1);
    }
  }
  r.catch_up_s = WallSeconds() - t0;
  r.process_cpu_us = (CpuSeconds() - cpu0) / keys.size() * 1e6;
  auto after = ThreadCpuNs();
  r.master_cpu_us = CpuSince(before, after, master_threads) / keys.size() * 1e6;
  r.follower_cpu_us = CpuSince(before, after, follower_threads) / keys.size() * 1e6;
  r.master_in_loop = CpuSince(before, loop_end, master_threads) /
                     std::max(1e-9, CpuSince(before, after, master_threads));
  for (const auto& follower : replicas) {
    plugin::FollowerStatus status = follower->status();
    if (status.connects != 1) {
      // A follower dropped and reconnected meanwhile: part of the loop ran without it.
      fmt::print(stderr, "sdiff-bench: a follower reconnected during the run: {}\n",
                 status.last_error);
      std::exit(1);
    }
    if (status.keys != keys.size()) {
      fmt::print(stderr, "sdiff-bench: a follower holds {} keys, expected {}\n", status.keys,
                 keys.size());
      std::exit(1);
    }
  }
  replicas.clear();
  master.reset();
  Check(db->Close(), "closing the master DB");
  return r;
}

struct OverheadResult {
  size_t batch = 0;
  size_t followers = 1;
  std::vector<Measurement> plain, attached;

  static double MedianOf(const std::vector<Measurement>& v, double Measurement::*field) {
    std::vector<double> values;
    for (const Measurement& m : v) values.push_back(m.*field);
    return Median(values);
  }
  double plain_median(double Measurement::*field = &Measurement::puts_per_s) const {
    return MedianOf(plain, field);
  }
  double attached_median(double Measurement::*field = &Measurement::puts_per_s) const {
    return MedianOf(attached, field);
  }
  // Each round measures plain and attached back to back, so their ratio is
  // paired: the median of those is steadier than a ratio of medians when
  // the machine's speed drifts between rounds.
  double ratio() const {
    std::vector<double> ratios;
    for (size_t i = 0; i < plain.size() && i < attached.size(); ++i) {
      ratios.push_back(attached[i].puts_per_s / plain[i].puts_per_s);
    }
    return Median(ratios);
  }
};

}  // namespace

int RunOverheadBench(const OverheadBenchOptions& options) {
  std::vector<std::string> keys = RandomStrings(options.puts, kKeySize, 42);
  ValuePool values(kValueSize, 7);
  std::vector<OverheadResult> results;
  for (size_t followers : options.followers) {
    for (size_t batch : options.batches) {
      results.emplace_back();
      results.back().batch = batch;
      results.back().followers = followers;
    }
  }

  if (!options.json) {
    fmt::print(
        "{} puts per measurement, {}-byte keys, {}-byte values, WAL on, no fsync; medians of {} "
        "rounds, plain and attached alternating.\nattached: Master + N Followers in this process "
        "over loopback, the followers' threads {}; the loop calls master->NotifyWrite() after "
        "each Write.\n",
        options.puts, kKeySize, kValueSize, options.rounds,
        options.idle_follower ? "at SCHED_IDLE (the master's own cost)"
                              : "at the master's priority (--equal-follower)");
  }
  for (int round = 0; round < options.rounds; ++round) {
    for (OverheadResult& r : results) {
      r.plain.push_back(MeasurePlain(keys, values, r.batch));
      r.attached.push_back(MeasureAttached(keys, values, r.batch, r.followers,
                                           options.idle_follower, options.io_threads));
      if (!options.json) {
        fmt::print(stderr,
                   "round {} batch {} followers {}: plain {:.0f}/s, attached {:.0f}/s, ratio "
                   "{:.3f}\n",
                   round + 1, r.batch, r.followers, r.plain.back().puts_per_s,
                   r.attached.back().puts_per_s,
                   r.attached.back().puts_per_s / r.plain.back().puts_per_s);
      }
    }
  }

  double lowest = 1e300;
  for (const OverheadResult& r : results) lowest = std::min(lowest, r.ratio());
  using M = Measurement;
  if (options.json) {
    fmt::print(
        "{{\"benchmark\": \"overhead\", \"puts\": {}, \"rounds\": {}, \"idle_follower\": {}, "
        "\"io_threads\": {}, \"results\": [",
        options.puts, options.rounds, options.idle_follower, options.io_threads);
    for (size_t i = 0; i < results.size(); ++i) {
      const OverheadResult& r = results[i];
      fmt::print(
          "{}{{\"batch\": {}, \"followers\": {}, \"plain_puts_per_s\": {:.0f}, "
          "\"attached_puts_per_s\": {:.0f}, "
          "\"ratio\": {:.3f}, \"plain_writer_cpu_us_per_put\": {:.3f}, "
          "\"attached_writer_cpu_us_per_put\": {:.3f}, \"plain_process_cpu_us_per_put\": {:.3f}, "
          "\"attached_process_cpu_us_per_put\": {:.3f}, \"attached_master_plugin_cpu_us_per_put\": "
          "{:.3f}, \"attached_master_plugin_in_loop_share\": {:.3f}, "
          "\"attached_follower_cpu_us_per_put\": {:.3f}}}",
          i ? ", " : "", r.batch, r.followers, r.plain_median(), r.attached_median(), r.ratio(),
          r.plain_median(&M::writer_cpu_us), r.attached_median(&M::writer_cpu_us),
          r.plain_median(&M::process_cpu_us), r.attached_median(&M::process_cpu_us),
          r.attached_median(&M::master_cpu_us), r.attached_median(&M::master_in_loop),
          r.attached_median(&M::follower_cpu_us));
    }
    fmt::print("], \"ratio_attached_to_plain\": {:.3f}}}\n", lowest);
    return 0;
  }
  fmt::print("{:>6} {:>9} {:>12} {:>12} {:>6} {:>17} {:>17} {:>15} {:>15} {:>9}\n", "batch",
             "followers", "plain put/s", "attached/s", "ratio", "writer CPU us/put",
             "all CPU us/put", "writer on CPU", "writer waiting", "catch-up");
  for (const OverheadResult& r : results) {
    fmt::print(
        "{:>6} {:>9} {:>12.0f} {:>12.0f} {:>6.3f} {:>7.2f} -> {:>6.2f} {:>7.2f} -> {:>6.2f} "
        "{:>5.0f}% -> {:>3.0f}% {:>5.0f}% -> {:>3.0f}% {:>7.2f} s\n",
        r.batch, r.followers, r.plain_median(), r.attached_median(), r.ratio(),
        r.plain_median(&M::writer_cpu_us), r.attached_median(&M::writer_cpu_us),
        r.plain_median(&M::process_cpu_us), r.attached_median(&M::process_cpu_us),
        100 * r.plain_median(&M::writer_share), 100 * r.attached_median(&M::writer_share),
        100 * r.plain_median(&M::writer_waiting), 100 * r.attached_median(&M::writer_waiting),
        r.attached_median(&M::catch_up_s));
  }
  fmt::print(
      "ratio attached/plain (the lower): {:.3f}\nratio: the median over rounds of attached/plain, "
      "each pair measured back to back. CPU columns: plain -> attached, medians. writer: "
      "the thread running the loop; all: every thread of the process (attached: until the "
      "follower has applied everything). writer on CPU / waiting: the share of the loop's wall "
      "time it ran / was runnable but waited for a CPU (the rest it was blocked).\n",
      lowest);
  fmt::print(
      "\nattached, CPU us per put by thread group (medians):\n{:>6} {:>9} {:>8} {:>14} {:>8} "
      "{:>10} {:>9}\n",
      "batch", "followers", "writer", "master plugin", "in loop", "follower", "other");
  for (const OverheadResult& r : results) {
    double writer = r.attached_median(&M::writer_cpu_us);
    double master = r.attached_median(&M::master_cpu_us);
    double follower = r.attached_median(&M::follower_cpu_us);
    double all = r.attached_median(&M::process_cpu_us);
    fmt::print("{:>6} {:>9} {:>8.2f} {:>14.2f} {:>7.0f}% {:>10.2f} {:>9.2f}\n", r.batch,
               r.followers, writer, master, 100 * r.attached_median(&M::master_in_loop), follower,
               std::max(0.0, all - writer - master - follower));
  }
  fmt::print(
      "master plugin: the threads Master::Attach started (WAL tailer, server), and the share of "
      "it spent during the loop; follower: those "
      "Follower::Open started; other: RocksDB's background threads (both DBs) and the rest.\n");
  return 0;
}

}  // namespace sdiff::bench
