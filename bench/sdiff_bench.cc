// sdiff-bench: one program for every benchmark scenario; `sdiff-bench --help`.
#include <CLI/CLI.hpp>

#include "bench/diff_bench.h"
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

  sdiff::bench::DiffBenchOptions diff;
  CLI::App* diff_cmd = app.add_subcommand("diff", "diff protocol: round trips, bytes, CPU");
  diff_cmd->add_flag("--json", diff.json, "print one JSON object");
  diff_cmd->add_option("--sizes", diff.sizes, "key counts")->expected(1, -1);
  diff_cmd->add_option("--diffs", diff.diffs, "difference counts")->expected(1, -1);

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
  return 2;
}
