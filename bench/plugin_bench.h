// The scenarios that run the RocksDB plugin: `sdiff-bench overhead`, `stream`
// (and its hidden child, `stream-follower`) and `bootstrap`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sdiff::bench {

struct OverheadBenchOptions {
  size_t puts = 200'000;  // per measurement
  int rounds = 3;         // plain and attached alternate; medians reported
  // The followers' threads run at SCHED_IDLE: they get only the CPU the
  // master's threads leave, as followers on other machines take none, so the
  // ratio shows what the master itself pays. Off (--equal-follower): they
  // compete with the master at its own priority, as on one shared machine.
  bool idle_follower = true;
  std::vector<size_t> batches = {1, 100};  // puts per WriteBatch; one result each
  // Followers connected while attached; one result per count and batch, so
  // fan-out is compared side by side in one run.
  std::vector<size_t> followers = {1};
  int io_threads = 1;  // the master's network threads (MasterOptions::server.threads)
  bool json = false;
};

// The master application's write rate without and with the plugin attached.
int RunOverheadBench(const OverheadBenchOptions& options);

struct StreamBenchOptions {
  std::vector<uint64_t> rates = {10'000, 50'000, 100'000};  // offered puts/s
  double seconds = 3;                                       // writing time per rate
  int max_probes = 4;  // extra rates tried to find the highest sustained one
  bool tls = false;    // the follower connects over TLS (throwaway certificates)
  int io_threads = 1;  // the master's network threads (MasterOptions::server.threads)
  bool json = false;
};

// Lag from master commit to apply on a follower in a child process.
int RunStreamBench(const StreamBenchOptions& options);

struct StreamFollowerOptions {
  std::string master;  // HOST:PORT
  std::string db;      // the replica's directory
  std::string tls_ca;  // with TLS: the CA file the master's certificate chains to
};

// The child of `stream`: follows the master and answers the parent's requests
// on stdin/stdout (see stream_bench.cc).
int RunStreamFollower(const StreamFollowerOptions& options);

struct BootstrapBenchOptions {
  size_t keys = 1'000'000;
  bool json = false;
  bool clone_only = false;  // skip the entry bootstrap (for profiling the copy)
  int repeat = 3;           // clones and copies timed; medians are reported
};

// An empty follower's bootstrap against `cp -r` of the master's directory.
int RunBootstrapBench(const BootstrapBenchOptions& options);

struct AuditBenchOptions {
  uint64_t keys = 1'000'000;  // in the master before it attaches
  uint64_t rate = 50'000;     // offered puts/s while measuring the stream
  double seconds = 3;         // writing time per phase (the audited one lasts the audit)
  uint64_t rate_mb = 64;      // the audit's pace (AuditOptions::max_bytes_per_second), MiB/s
  bool json = false;
};

// The self-audit of a master: its time alone and beside a paced stream, the
// stream's lag with and without it, and the tailer's cost of a range delete.
int RunAuditBench(const AuditBenchOptions& options);

struct AckBenchOptions {
  size_t writes = 2000;                   // per measurement, one in flight
  std::vector<size_t> min_acks = {0, 1};  // one measurement each
  bool json = false;
};
// Write latency through the master (writer role) on loopback, with the
// master's min_acks at each value and one follower in this process.
int RunAckBench(const AckBenchOptions& options);

struct TwoPhaseBenchOptions {
  uint64_t keys = 1'000'000;  // in the master before it attaches
  uint64_t rate = 1000;       // offered transactions/s
  uint32_t puts = 4;          // per transaction
  double seconds = 3;
  bool json = false;
};
// Two-phase-commit transactions on a TransactionDB master: the follower's
// lag, the master's CPU per transaction beside a plain TransactionDB's, and
// the tree rebuilds they cause (goal: none).
int RunTwoPhaseBench(const TwoPhaseBenchOptions& options);

}  // namespace sdiff::bench
