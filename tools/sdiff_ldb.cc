// sdiff-ldb: an ldb-style tool for a master's or follower's RocksDB (put, get,
// delete, scan, merkle root, diff of two databases). Flag parsing only; the
// commands are in ldb_commands.{h,cc}.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "tools/ldb_commands.h"

namespace {

constexpr char kFooter[] = R"(
Exit status, as diff(1): 0 done (diff: identical), 1 diff found differences
or get found no such key, 2 error (one line on stderr).

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
  app.add_option("--db", request.db, "the database directory (never created)")->required();
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
  CLI::App* del = app.add_subcommand("delete", "delete KEY");
  del->add_option("KEY", request.key, "the key")->required();
  CLI::App* scan = app.add_subcommand("scan", "print every entry as KEY ==> VALUE");
  CLI::App* root = app.add_subcommand("root", "print the merkle root hash and key count");
  CLI::App* diff = app.add_subcommand("diff", "print the keys that differ from --db2");
  diff->add_option("--db2", request.db2, "the other database (the + side)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    return sdiff::tools::ReportError(std::cerr, e.what());
  }

  request.key_hex = request.key_hex || hex;
  request.value_hex = request.value_hex || hex;
  if (family_option->count() > 0) request.column_family = family;
  if (put->parsed()) request.command = LdbCommand::kPut;
  if (get->parsed()) request.command = LdbCommand::kGet;
  if (del->parsed()) request.command = LdbCommand::kDelete;
  if (scan->parsed()) request.command = LdbCommand::kScan;
  if (root->parsed()) request.command = LdbCommand::kRoot;
  if (diff->parsed()) request.command = LdbCommand::kDiff;
  return sdiff::tools::RunLdb(request, std::cout, std::cerr);
}
