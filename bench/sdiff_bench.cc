// sdiff-bench: one program for every benchmark scenario; `sdiff-bench --help`.
#include <CLI/CLI.hpp>

#include "bench/diff_bench.h"
#include "bench/plugin_bench.h"
#include "bench/records_bench.h"
#include "bench/tree_bench.h"

int main(int argc, char** argv) {
  CLI::App app{"sdiff benchmarks: each subcommand prints figures, or one JSON object with --json"};
  app.require_subcommand(1);

  sdiff::bench::TreeBenchOptions tree;
  bool tree_big = false;
  CLI::App* tree_cmd = app.add_subcommand("tree", "merkle tree: rates, snapshot, diff, memory");
  tree_cmd->add_flag("--json", tree.json, "print one JSON object");
  tree_cmd->add_flag("--big", tree_big, "also n = 1e7 (needs about 2 GiB)");
  tree_cmd->add_option("--sizes", tree.sizes, "key counts to measure")->expected(1, -1);
  tree_cmd
      ->add_option("--group", tree.group,
                   "writes applied this many at a time, their paths prefetched first")
      ->check(CLI::Range(size_t{1}, size_t{4096}));

  sdiff::bench::DiffBenchOptions diff;
  CLI::App* diff_cmd = app.add_subcommand("diff", "diff protocol: round trips, bytes, CPU");
  diff_cmd->add_flag("--json", diff.json, "print one JSON object");
  diff_cmd->add_option("--sizes", diff.sizes, "key counts")->expected(1, -1);
  diff_cmd->add_option("--diffs", diff.diffs, "difference counts")->expected(1, -1);
  diff_cmd->add_option("--repeat", diff.repeat, "diffs per (n, d); CPU is their median")
      ->check(CLI::Range(1, 1000));
  diff_cmd->add_option("--perf-control", diff.perf_control,
                       "FIFO of `perf record --control=fifo:FIFO -D -1`: profile the diffs only");

  sdiff::bench::OverheadBenchOptions overhead;
  CLI::App* overhead_cmd =
      app.add_subcommand("overhead", "RocksDB plugin: master write rate, plain vs attached");
  overhead_cmd->add_flag("--json", overhead.json, "print one JSON object");
  overhead_cmd->add_option("--puts", overhead.puts, "puts per measurement")
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
      ->capture_default_str();
  overhead_cmd->add_flag("--idle-follower,!--equal-follower", overhead.idle_follower,
                         "the followers' threads at SCHED_IDLE, the master's own cost (default); "
                         "--equal-follower: at the master's priority, as on one shared machine");
  overhead_cmd->add_option("--followers", overhead.followers, "followers, comma-separated counts")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{64}))
      ->capture_default_str();
  overhead_cmd->add_option("--io-threads", overhead.io_threads, "the master's network threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  overhead_cmd->add_option("--rounds", overhead.rounds, "plain/attached rounds (medians)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  overhead_cmd->add_option("--batches", overhead.batches, "puts per batch, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{100'000}))
      ->capture_default_str();

  sdiff::bench::StreamBenchOptions stream;
  CLI::App* stream_cmd =
      app.add_subcommand("stream", "RocksDB plugin: commit-to-apply lag, follower in a process");
  stream_cmd->add_flag("--json", stream.json, "print one JSON object");
  stream_cmd->add_option("--rates", stream.rates, "offered puts/s, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  stream_cmd->add_option("--seconds", stream.seconds, "writing time per rate")
      ->capture_default_str();
  stream_cmd
      ->add_option("--probes", stream.max_probes, "extra rates tried for the highest sustained")
      ->capture_default_str();
  stream_cmd->add_option("--io-threads", stream.io_threads, "the master's network threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  stream_cmd->add_flag("--tls", stream.tls,
                       "the follower connects over TLS (throwaway certificates made for the run)");

  // The child `stream` spawns; not for direct use, so hidden from --help.
  sdiff::bench::StreamFollowerOptions stream_follower;
  CLI::App* stream_follower_cmd = app.add_subcommand("stream-follower", "")->group("");
  stream_follower_cmd->add_option("--master", stream_follower.master)->required();
  stream_follower_cmd->add_option("--db", stream_follower.db)->required();
  stream_follower_cmd->add_option("--tls-ca", stream_follower.tls_ca);

  sdiff::bench::BootstrapBenchOptions bootstrap;
  CLI::App* bootstrap_cmd =
      app.add_subcommand("bootstrap", "RocksDB plugin: empty follower's bootstrap vs cp -r");
  bootstrap_cmd->add_flag("--json", bootstrap.json, "print one JSON object");
  bootstrap_cmd->add_option("--keys", bootstrap.keys, "keys in the master")->capture_default_str();
  bootstrap_cmd->add_flag("--clone-only", bootstrap.clone_only,
                          "time only the file copy, not the entry bootstrap");
  bootstrap_cmd->add_option("--repeat", bootstrap.repeat, "clones and cp -r runs (medians)")
      ->check(CLI::Range(1, 50))
      ->capture_default_str();

  sdiff::bench::AuditBenchOptions audit;
  CLI::App* audit_cmd = app.add_subcommand(
      "audit", "RocksDB plugin: self-audit time and stream lag beside it; range delete cost");
  audit_cmd->add_flag("--json", audit.json, "print one JSON object");
  audit_cmd->add_option("--keys", audit.keys, "keys in the master")->capture_default_str();
  audit_cmd->add_option("--rate", audit.rate, "offered puts/s")->capture_default_str();
  audit_cmd->add_option("--seconds", audit.seconds, "writing time per phase")
      ->capture_default_str();
  audit_cmd->add_option("--rate-mb", audit.rate_mb, "the audit's pace, MiB/s (0: unlimited)")
      ->capture_default_str();

  sdiff::bench::RecordsBenchOptions records;
  CLI::App* records_cmd = app.add_subcommand(
      "records", "record layer: CPU to seal and open, checksums and MACs, per send size");
  records_cmd->add_flag("--json", records.json, "print one JSON object");
  records_cmd->add_option("--megabytes", records.megabytes, "bytes per measurement, MiB")
      ->check(CLI::Range(size_t{1}, size_t{100'000}))
      ->capture_default_str();
  records_cmd->add_option("--sends", records.sends, "send sizes in bytes, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{1} << 30))
      ->capture_default_str();

  sdiff::bench::AckBenchOptions acks;
  CLI::App* acks_cmd = app.add_subcommand(
      "acks", "RocksDB plugin: write latency through the master with --min-acks 0 and 1");
  acks_cmd->add_flag("--json", acks.json, "print one JSON object");
  acks_cmd->add_option("--writes", acks.writes, "writes per measurement")
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}))
      ->capture_default_str();
  acks_cmd->add_option("--min-acks", acks.min_acks, "the master's min-acks, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(size_t{0}, size_t{1}))
      ->capture_default_str();

  sdiff::bench::TwoPhaseBenchOptions twopc;
  CLI::App* twopc_cmd = app.add_subcommand(
      "twopc", "RocksDB plugin: two-phase-commit transactions: lag, CPU, rebuilds");
  twopc_cmd->add_flag("--json", twopc.json, "print one JSON object");
  twopc_cmd->add_option("--keys", twopc.keys, "keys in the master")->capture_default_str();
  twopc_cmd->add_option("--rate", twopc.rate, "offered transactions/s")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1'000'000}))
      ->capture_default_str();
  twopc_cmd->add_option("--puts", twopc.puts, "puts per transaction")
      ->check(CLI::Range(1u, 10'000u))
      ->capture_default_str();
  twopc_cmd->add_option("--seconds", twopc.seconds, "writing time")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (tree_cmd->parsed()) {
    if (tree_big) tree.sizes.push_back(10'000'000);
    return sdiff::bench::RunTreeBench(tree);
  }
  if (diff_cmd->parsed()) return sdiff::bench::RunDiffBench(diff);
  if (overhead_cmd->parsed()) return sdiff::bench::RunOverheadBench(overhead);
  if (stream_cmd->parsed()) return sdiff::bench::RunStreamBench(stream);
  if (stream_follower_cmd->parsed()) return sdiff::bench::RunStreamFollower(stream_follower);
  if (bootstrap_cmd->parsed()) return sdiff::bench::RunBootstrapBench(bootstrap);
  if (audit_cmd->parsed()) return sdiff::bench::RunAuditBench(audit);
  if (records_cmd->parsed()) return sdiff::bench::RunRecordsBench(records);
  if (acks_cmd->parsed()) return sdiff::bench::RunAckBench(acks);
  if (twopc_cmd->parsed()) return sdiff::bench::RunTwoPhaseBench(twopc);
  return 2;
}
