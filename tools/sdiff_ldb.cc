// sdiff-ldb: an ldb-style tool for a master's or follower's RocksDB (put, get,
// delete, scan, merkle root, diff of two databases) and for a running master
// (diff and repair against it, writes through it, its self-audit). Flag parsing only; the
// commands are in ldb_commands.{h,cc} and ldb_remote.cc.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tools/daemon_util.h"
#include "tools/ldb_commands.h"

namespace {

constexpr char kFooter[] = R"(
Exit status, as diff(1): 0 done (diff: identical; audit: the master's tree
equals its data), 1 diff found differences, get found no such key, or audit
found (and the master repaired) keys where its tree differed from its data,
2 error: a bad flag, value or file, or a failure (one line on stderr).

Every global flag can also be set in a --config file, `name = value` a line
(a flag's name without its dashes; a command's flags under `[command]`).

Output: keys and values are printed with printable ASCII as-is and other bytes
(and the backslash) as \xNN, or as 0x-prefixed hex with --hex, --key_hex or
--value_hex; get prints the value as stored. Entries of a column family other
than "default" are prefixed "NAME:". diff prints "+ KEY" (only in --db2),
"- KEY" (only in --db) or "~ KEY" (the value differs), ordered by family and
key, and a summary on stderr.

Merkle tags: a master and its follower may number column families
differently, so families are tagged by name. root tags each family by its
index in the database's sorted family names; diff by its index in the sorted
union of both databases' names. The follower's "__sdiff" family is never part
of the tree. Roots printed here are comparable between databases with the same
family names, not with the root a running master reports.

Read commands open the database read-only (no lock taken, nothing written);
put and delete need it not held by another process.

Against a running master (--master=HOST:PORT, with --secret-file and the TLS
flags the master needs, and --timeout SECONDS to bound the whole command):
  diff --master     compares --db with the master's data through the diff
                    protocol ("+ KEY" only on the master); exit as above
  repair --master   makes --db equal to the master's replicated families and
                    prints what it changed (--dry-run: what it would change)
  put, delete, load write through a master started with --allow-writers; load
                    reads KEY<TAB>VALUE lines from FILE ("-": stdin);
                    --print-seq prints "seq N" (the master sequence) for
                    OK; a master with --min-acks that timed out waiting for
                    its followers: one line, exit 2 (the write is committed)

Read-your-writes on a live replica: get KEY --db=REPLICA --min-seq=N
--wait-ms=T reads it as a secondary once its follower has applied master
sequence N; exit 2 with one line when T ms pass first.
  audit             the master checks its merkle tree against its database now
                    (its self-audit) and repairs what differs; prints the
                    sequence, keys scanned, mismatches, seconds and the first
                    differing keys; exit 0 equal, 1 repaired, 2 error
)";

}  // namespace

int main(int argc, char** argv) {
  using sdiff::tools::LdbCommand;
  sdiff::tools::LdbRequest request;
  bool hex = false;
  std::string family;

  CLI::App app{"sdiff-ldb: read, write and compare sdiff master and follower databases"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the command
  sdiff::tools::AddVersionFlag(app, "sdiff-ldb");
  sdiff::tools::AddConfigFlag(app);
  app.add_option("--db", request.db, "the database directory (never created)");
  app.add_option("--options-file", request.options_file,
                 "a RocksDB OPTIONS file (as ldb and db_bench take) to open --db and --db2 "
                 "with (default: RocksDB's defaults)")
      ->type_name("FILE");
  app.add_option("--master", request.master,
                 "HOST:PORT of a running master: diff/repair against it, write through it, or "
                 "audit it");
  double timeout_s = 0;
  CLI::Option* timeout_option =
      app.add_option("--timeout", timeout_s,
                     "with --master: SECONDS for the whole command (lookup, connect, the "
                     "exchange); when they pass it stops with an error, exit 2 (default: none)")
          ->check(CLI::Validator(
              [](std::string& value) -> std::string {
                // CLI11's own range check prints DBL_MAX in full.
                double seconds = std::strtod(value.c_str(), nullptr);
                return seconds > 0 && seconds <= 1e9 ? "" : "must be a number of seconds above 0";
              },
              "SECONDS"));
  sdiff::tools::SecurityFlags security;
  security.Add(app);
  sdiff::tools::LogFlags log;  // for what the library logs (the output is not logs)
  log.Add(app);
  app.add_flag("--hex", hex, "keys and values in and out as hex");
  app.add_flag("--key_hex", request.key_hex, "keys in and out as hex");
  app.add_flag("--value_hex", request.value_hex, "values in and out as hex");
  CLI::Option* family_option = app.add_option(
      "--column_family", family,
      "the column family (default: \"default\" for put, get and delete; every family but "
      "__sdiff for scan, root and diff)");

  CLI::App* put = app.add_subcommand("put", "put KEY VALUE");
  put->add_option("KEY", request.key, "the key")->required();
  put->add_option("VALUE", request.value, "the value")->required();
  CLI::App* get = app.add_subcommand("get", "print the value of KEY; exit 1 if absent");
  get->add_option("KEY", request.key, "the key")->required();
  CLI::Option* min_seq = get->add_option(
      "--min-seq", request.min_seq,
      "read --db, a live follower's replica, as a secondary once it has applied this master "
      "sequence (from put --print-seq)");
  int64_t wait_ms = 0;
  CLI::Option* wait_option =
      get->add_option("--wait-ms", wait_ms,
                      "with --min-seq: how long to wait for it; exit 2 when it passes (default: 0)")
          ->check(CLI::Range(int64_t{0}, int64_t{86400000}));
  CLI::App* del = app.add_subcommand("delete", "delete KEY");
  del->add_option("KEY", request.key, "the key")->required();
  CLI::App* scan = app.add_subcommand("scan", "print every entry as KEY ==> VALUE");
  CLI::App* root = app.add_subcommand("root", "print the merkle root hash and key count");
  CLI::App* diff = app.add_subcommand("diff", "print the keys that differ from --db2");
  CLI::Option* db2 = diff->add_option("--db2", request.db2, "the other database (the + side)");
  CLI::App* repair =
      app.add_subcommand("repair", "make --db equal to --master, printing what changed");
  repair->add_flag("--dry-run", request.dry_run, "print what would change; change nothing");
  CLI::App* load = app.add_subcommand("load", "put KEY<TAB>VALUE lines of FILE through --master");
  load->add_option("FILE", request.file, "the file (\"-\": standard input)")->required();
  for (CLI::App* write : {put, del, load}) {
    write->add_flag("--print-seq", request.print_seq,
                    "with --master: print \"seq N\", the master sequence the write committed at "
                    "(for get --min-seq, or Follower::WaitForSequence)");
  }
  CLI::App* audit = app.add_subcommand(
      "audit", "have --master check its tree against its database; exit 1 if it repaired any");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    return sdiff::tools::ReportError(std::cerr, sdiff::tools::DescribeParseError(app, e));
  }

  sdiff::tools::SetUpLogging("sdiff-ldb", log);
  request.key_hex = request.key_hex || hex;
  request.value_hex = request.value_hex || hex;
  if (family_option->count() > 0) request.column_family = family;
  if (put->parsed()) request.command = LdbCommand::kPut;
  if (get->parsed()) request.command = LdbCommand::kGet;
  if (del->parsed()) request.command = LdbCommand::kDelete;
  if (scan->parsed()) request.command = LdbCommand::kScan;
  if (root->parsed()) request.command = LdbCommand::kRoot;
  if (diff->parsed()) request.command = LdbCommand::kDiff;
  if (repair->parsed()) request.command = LdbCommand::kRepair;
  if (load->parsed()) request.command = LdbCommand::kLoad;
  if (audit->parsed()) request.command = LdbCommand::kAudit;

  auto usage = [](const char* message) { return sdiff::tools::ReportError(std::cerr, message); };
  bool remote = !request.master.empty();
  if ((repair->parsed() || load->parsed() || audit->parsed()) && !remote) {
    return usage("repair, load and audit need --master=HOST:PORT");
  }
  if (!remote && request.db.empty()) return usage("--db is required (or --master, see --help)");
  if (diff->parsed() && remote == (db2->count() > 0)) {
    return usage("diff needs exactly one of --db2 and --master");
  }
  if (request.print_seq && !remote) return usage("--print-seq needs --master=HOST:PORT");
  if (wait_option->count() > 0 && min_seq->count() == 0) return usage("--wait-ms needs --min-seq");
  if (min_seq->count() > 0 && (remote || request.min_seq == 0)) {
    return usage("--min-seq needs --db=REPLICA and a sequence above 0");
  }
  request.wait_ms = std::chrono::milliseconds(wait_ms);
  if (timeout_option->count() > 0) {
    if (!remote) return usage("--timeout bounds commands against --master only");
    request.timeout =
        std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(timeout_s * 1000)));
  }
  if (remote) {
    sdiff::Status s =
        security.Load(sdiff::tools::SecurityFlags::Side::kClient, &request.secret, &request.tls);
    if (!s.ok()) return sdiff::tools::ReportError(std::cerr, s.message());
  }
  return sdiff::tools::RunLdb(request, std::cout, std::cerr);
}
