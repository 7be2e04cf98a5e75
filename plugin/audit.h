// Self-audit: checks a merkle tree against the data it stands for. Every diff
// compares a follower with the master's tree, so a tree that drifted from its
// database (a WAL record read wrongly, a compaction filter, a file deleted
// behind RocksDB's back) would be copied to every follower and never noticed.
// An audit scans a RocksDB snapshot at sequence S, builds a tree from it and
// compares it with the live tree as it was at exactly S.
//
// Master::Audit and Follower::Audit run one through an Auditor, which also
// runs them on a schedule. What each does with a mismatch is its own (the
// master corrects its tree and has every follower diff; a follower corrects
// its tree and asks the master for a diff).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/merkle_tree.h"
#include "engine/status.h"
#include "net/mutex.h"
#include "net/stop_signal.h"
#include "net/thread_annotations.h"
#include "plugin/tree_scan.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct AuditOptions {
  // How often the periodic audit runs. 0: only on demand. Default: 1 hour.
  std::chrono::milliseconds interval = std::chrono::hours(1);
  // The scan's pace, so that an audit never starves the application's
  // writes. 0: unlimited. Default: 64 MiB/s.
  uint64_t max_bytes_per_second = 64 << 20;
};

struct AuditResult {
  uint64_t seq = 0;                   // the sequence the data and the tree were compared at
  uint64_t keys = 0;                  // keys scanned
  uint64_t mismatches = 0;            // keys whose tree entry differed from the data, corrected
  std::vector<std::string> examples;  // the first few of them, "family:key" escaped
  double seconds = 0;                 // how long the audit took
};

// Totals since start, for metrics.
struct AuditStats {
  uint64_t runs = 0;         // audits finished (with or without mismatches)
  uint64_t failures = 0;     // audits that could not finish (see the log)
  uint64_t mismatches = 0;   // keys corrected, summed over every audit
  int64_t last_unix_ms = 0;  // when the last audit finished; 0: never
  double last_seconds = 0;   // how long it took
  uint64_t last_mismatches = 0;
  uint64_t last_keys = 0;            // keys the last finished audit scanned
  bool last_failed = false;          // the latest audit could not finish
  int64_t last_failure_unix_ms = 0;  // when an audit last failed; 0: never
};

// The most differing keys an audit corrects one by one; beyond this many the
// master rebuilds its tree instead.
inline constexpr size_t kMaxAuditCorrections = 100000;
// How many differing keys an audit logs and reports.
inline constexpr size_t kAuditExamples = 5;

// Compares `tree`, which must be the tree of `families` as of `snapshot`,
// with a scan of that snapshot. *differing: every key whose entry differs.
// *keys: keys scanned.
Status FindTreeMismatches(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                          const TaggedFamilies& families, const TreeView& tree,
                          const TreeScanOptions& scan, std::vector<DiffEntry>* differing,
                          uint64_t* keys);

// "family:key" with bytes outside printable ASCII escaped, long keys cut.
std::string PrintableKey(const std::string& family, std::string_view key);

// What a master and a follower share around their audits: one at a time,
// timed, counted, logged, on a schedule, and cancelled on shutdown.
class Auditor {
 public:
  // The work of one audit: scan with `scan`, compare, correct, fill *result.
  using AuditFn = std::function<Status(const TreeScanOptions& scan, AuditResult* result)>;
  struct Words {        // for the log lines
    std::string tree;   // "the tree"
    std::string data;   // "the database"
    std::string after;  // what follows a correction: "followers will diff"
  };
  // Starts the schedule when options.interval is not 0.
  Auditor(AuditOptions options, std::shared_ptr<spdlog::logger> log, Words words, AuditFn audit);
  ~Auditor();  // Cancel()s, then waits for an audit under way to return
  Auditor(const Auditor&) = delete;
  Auditor& operator=(const Auditor&) = delete;

  // Runs one audit now (after one under way). Thread-safe.
  Status Run(AuditResult* result);
  // Ends the schedule and stops an audit under way (its scan stops within a
  // MiB); every Run after it fails at once. Thread-safe; the owner calls it
  // before taking away what the audit reads (the tree, the server).
  void Cancel();
  AuditStats stats() const;

 private:
  const AuditOptions options_;
  const std::shared_ptr<spdlog::logger> log_;
  const Words words_;
  const AuditFn audit_;
  std::atomic<bool> stopping_{false};
  net::Mutex run_mu_;     // held for a whole audit
  net::StopSignal stop_;  // ends the schedule
  mutable net::Mutex mu_;
  AuditStats stats_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sdiff::plugin
