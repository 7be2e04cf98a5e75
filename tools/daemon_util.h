// What the sdiff daemons share: signal handling, one-line errors, opening a
// RocksDB directory with all its column families, and the common flags
// (security, metrics).
#pragma once

#include <rocksdb/db.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "net/master_server.h"
#include "net/metrics_server.h"
#include "net/tls.h"
#include "plugin/audit.h"
#include "tools/rocks_options.h"

namespace sdiff::tools {

// Blocks SIGINT and SIGTERM in this thread and every thread started after;
// call first thing in main, then WaitForStopSignal() when serving.
void BlockStopSignals();
// Waits for SIGINT or SIGTERM; returns its name.
const char* WaitForStopSignal();

// --log-level and --log-format, as every program spells them.
struct LogFlags {
  std::string level = "info";   // trace, debug, info, warn, error or off
  std::string format = "text";  // text or json
  void Add(CLI::App& app);
  bool json() const { return format == "json"; }
};

// Logs go to stderr (stdout carries the one line scripts read), one line each:
// text ("2026-12-07 14:05:41.123 info message"), or with --log-format=json one
// JSON object a line for log shippers:
//   {"time":"2026-12-07T14:05:41.123Z","level":"info","program":"sdiff-rocks-master",
//    "message":"..."}
// with time in UTC and level one of trace, debug, info, warn, error, critical.
// Fail() and UsageError() go through the same logger from then on in JSON mode.
void SetUpLogging(const std::string& program, const LogFlags& flags);

// Parses flags: CLI11 errors become one line on stderr and exit code 2;
// --help and --version print and exit 0. Returns -1 when the program should go on.
int ParseOrExit(CLI::App& app, int argc, char** argv);

// The one line (without the program's name) that says what was wrong with
// the flags or the --config file.
std::string DescribeParseError(const CLI::App& app, const CLI::ParseError& e);

// --config FILE: every flag may also be set in an INI/TOML file, one
// `name = value` a line, named as the flag without its dashes (a subcommand's
// flags under `[subcommand]`); `#` and `;` start comments. A flag given on the
// command line wins over the file. A missing or unreadable file, an unknown
// name or a bad value is a usage error (one line, exit 2).
void AddConfigFlag(CLI::App& app);

// Checks of a flag's value that say in words what it must be (CLI11's own
// print the largest double in full): a number >= 0, a number > 0.
CLI::Validator NonNegative();
CLI::Validator Positive();
// HOST:PORT, as the daemons' addresses are written ([HOST]:PORT for IPv6).
CLI::Validator HostPort();

// --version, printing "PROGRAM 0.1.0 (protocol 2)" on stdout: the library's
// version (sdiff/version.h) and the wire protocol's, which peers must share.
void AddVersionFlag(CLI::App& app, const std::string& program);

// The daemons' exit statuses (sdiff-ldb's follow diff(1): tools/ldb_commands.h).
inline constexpr int kExitStopped = 0;  // stopped by SIGINT or SIGTERM; --help, --version
inline constexpr int kExitFailure = 1;  // the system failed: a port in use, a database
                                        // held by another process, RocksDB's I/O errors
inline constexpr int kExitUsage = 2;    // what the user gave is wrong: a flag, a value, a
                                        // file it names; found before the database opens
                                        // where it can be

// The daemons' --help footer: the exit statuses above.
extern const char kDaemonExitFooter[];

// Prints "PROGRAM: what" on stderr (a JSON log line with --log-format=json)
// and returns kExitUsage.
int UsageError(const std::string& program, const std::string& what);

// Prints "PROGRAM: ..." on stderr (a JSON log line with --log-format=json)
// and returns kExitUsage for InvalidArgument and NotFound (a flag's value, a
// file or path the user named: the library returns those for what it is
// given), kExitFailure for the rest.
int Fail(const std::string& program, const Status& s);

// A RocksDB opened with every column family it has.
struct OpenDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // owned: destroyed before db
  std::vector<std::string> replicated;                // names; empty: all but "__sdiff"
  ~OpenDb();
  // The handles to replicate: `replicated`, or all but sdiff's own "__sdiff".
  std::vector<rocksdb::ColumnFamilyHandle*> Replicated() const;
  // The family named `name`, or null.
  rocksdb::ColumnFamilyHandle* Family(std::string_view name) const;
};

// How sdiff-rocks-master opens its database and what it replicates:
// --create-if-missing, --options-file, --wal-ttl-seconds, --wal-size-limit-mb
// and --column-families.
struct DatabaseFlags {
  bool create_if_missing = false;
  std::string options_file;  // a RocksDB OPTIONS file; empty: RocksDB's defaults
  // WAL retention, so that the tailer (and followers coming back) find the
  // WAL files they need. With an options file, each applies only when given
  // (the file's value otherwise). Default: 600 s, no size limit.
  uint64_t wal_ttl_seconds = 600;
  uint64_t wal_size_limit_mb = 0;
  std::vector<std::string> column_families;  // empty: all but "__sdiff"
  void Add(CLI::App& app);
  // The options the database opens with: the options file's (or RocksDB's
  // defaults), create_if_missing, and the WAL retention above.
  Status Options(RocksOptions* out) const;

 private:
  CLI::Option* wal_ttl_ = nullptr;  // set by Add: whether the flags were given
  CLI::Option* wal_size_ = nullptr;
};

// Opens `path` with every column family it has, after checking, before
// anything is written: the path (InvalidArgument or NotFound: missing and not
// create_if_missing, not a directory, not a RocksDB database), the options
// file, and that each of --column-families exists (InvalidArgument). A
// database in use by another process, or that RocksDB cannot open, is IOError.
Status OpenDatabase(const std::string& path, const DatabaseFlags& flags, OpenDb* out);

// --secret-file and the --tls-* flags, as both daemons spell them.
struct SecurityFlags {
  std::string secret_file;
  std::string tls_cert, tls_key, tls_ca;
  void Add(CLI::App& app);
  enum class Side { kServer, kClient };
  // Reads the secret (and logs a warning for a loosely protected file) and
  // checks the TLS files by building the context the `side` will, so a bad
  // file stops the program before it touches anything. Errors are
  // InvalidArgument: they are about the files the flags name.
  Status Load(Side side, std::string* secret, net::TlsOptions* tls) const;
};

// What a daemon serving followers takes besides --listen, as both spell it
// (a master, and a follower serving followers of its own): --max-connections,
// --resume-window-mb, --follower-backlog-mb.
struct ServeFlags {
  size_t max_connections = 64;
  double resume_window_mb = 64;
  double backlog_mb = 64;
  void Add(CLI::App& app);
  size_t resume_window_bytes() const { return static_cast<size_t>(resume_window_mb * (1 << 20)); }
  // Sets the connection limit and the backlog a follower may leave.
  void Apply(net::MasterServerOptions* server) const;
  // Whether any of them was given (on the command line or in --config).
  static bool Given(const CLI::App& app);
};

// --metrics=HOST:PORT, as both daemons spell it.
struct MetricsFlag {
  std::string listen;  // empty: no metrics endpoint
  // A value that is not HOST:PORT is a usage error (one line, exit 2).
  void Add(CLI::App& app);
  // With the flag given, serves `routes` (tools/metrics_pages.h) and prints
  // "metrics on port N" on stdout (the port the OS picked for port 0).
  Status Start(net::MetricsServer::Routes routes, std::unique_ptr<net::MetricsServer>* out) const;
};

// --audit-interval and --audit-rate-mb, as both daemons spell them: the
// self-audit of the tree against the database (plugin/audit.h), on by default.
struct AuditFlags {
  double interval_s = 3600;
  double rate_mb = 64;
  void Add(CLI::App& app);
  plugin::AuditOptions Options() const;
};

// --min-free-mb, as both daemons spell it: the free space kept on the
// database's disk (plugin/disk_reserve.h). `refusal` says what the daemon
// stops doing below it.
struct MinFreeFlag {
  double mb = 256;
  void Add(CLI::App& app, const std::string& refusal);
  uint64_t bytes() const { return static_cast<uint64_t>(mb * (1 << 20)); }
};

}  // namespace sdiff::tools
