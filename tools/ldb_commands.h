// The commands of sdiff-ldb, an ldb-style tool for a master's or follower's
// RocksDB: put, get, delete, scan, the merkle root of a database and the
// differences between two. sdiff_ldb.cc parses flags into an LdbRequest and
// calls RunLdb; the tests call the pieces directly.
//
// Column family tags. The merkle tree hashes every key with its family's tag
// (engine/hash.h), and a master and its follower may number their families
// differently, so this tool tags families by NAME:
//   root: a family's tag is its index in the database's own sorted list of
//         family names;
//   diff: its index in the sorted union of both databases' names.
// The reserved follower family "__sdiff" (plugin/follower_store.h) is never
// part of a tree. Two databases with the same names and contents therefore
// print the same root; the root differs from the one a running Master reports,
// which tags families by their RocksDB IDs.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hash.h"
#include "engine/merkle_tree.h"
#include "engine/status.h"
#include "net/tls.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace sdiff::tools {

// Exit statuses, as diff(1).
inline constexpr int kExitOk = 0;  // done; diff: identical; audit: tree equals data
// diff: differences; get: no such key; audit: the master's tree differed from
// its data (and has been repaired)
inline constexpr int kExitDifferent = 1;
inline constexpr int kExitError = 2;  // anything went wrong

// One database opened with every column family. Never creates anything.
class LdbDb {
 public:
  enum class Mode {
    // OpenForReadOnly: takes no lock and writes nothing (not even RocksDB's
    // info LOG), so it can read a database another process is writing, as of
    // the moment it opens.
    kReadOnly,
    // Takes the database's lock; fails with "in use" if another process holds it.
    kReadWrite,
  };

  // Errors are one line naming the path: no such directory, not a RocksDB
  // database, in use by another process (kReadWrite), or RocksDB's own.
  // `options_file`: a RocksDB OPTIONS file to open it with (--options-file;
  // tools/rocks_options.h), checked before the database is touched; empty:
  // RocksDB's defaults.
  static Status Open(const std::string& path, Mode mode, std::unique_ptr<LdbDb>* out,
                     const std::string& options_file = "");
  ~LdbDb();  // closes the database
  LdbDb(const LdbDb&) = delete;
  LdbDb& operator=(const LdbDb&) = delete;

  const std::string& path() const { return path_; }
  // Every column family's name but "__sdiff", sorted.
  std::vector<std::string> DataFamilies() const;
  bool HasFamily(std::string_view name) const;

  // Each fails with InvalidArgument if the family does not exist. Get returns
  // NotFound when the key is absent (and only then).
  Status Put(std::string_view family, std::string_view key, std::string_view value);
  Status Get(std::string_view family, std::string_view key, std::string* value) const;
  Status Delete(std::string_view family, std::string_view key);
  // Calls fn for every entry of the family in key order; a non-OK result from
  // fn stops the scan and is returned.
  Status Scan(std::string_view family,
              const std::function<Status(std::string_view key, std::string_view value)>& fn) const;
  // The family's handle, or null if there is none and `create` is false; with
  // `create` (kReadWrite only) a missing family is created. "__sdiff" is refused.
  Status Family(const std::string& name, bool create, rocksdb::ColumnFamilyHandle** handle);
  // The existing family's handle ("__sdiff" included); InvalidArgument if there is none.
  Status Handle(std::string_view family, rocksdb::ColumnFamilyHandle** handle) const;
  rocksdb::DB* db() const { return db_.get(); }

 private:
  explicit LdbDb(std::string path);

  const std::string path_;
  std::unique_ptr<rocksdb::DB> db_;  // set once by Open
  // Every family's handle by name, "__sdiff" included; live until the destructor.
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> handles_;
};

// Tags by name (see the top of this file): the index of each distinct name in
// sorted order. Fails if there are more names than tags.
Status TagsByName(std::vector<std::string> names, std::map<std::string, FamilyTag>* tags);

// Adds every entry of `families` (each must have a tag) to the tree.
Status BuildTree(const LdbDb& db, const std::vector<std::string>& families,
                 const std::map<std::string, FamilyTag>& tags, MerkleTree* tree);

struct RootInfo {
  Hash128 root;
  size_t keys = 0;
};

// The merkle root of the database: every family but "__sdiff", or only
// `family` if one is given (tagged the same either way).
Status Root(const LdbDb& db, const std::optional<std::string>& family, RootInfo* info);

struct DiffLine {
  std::string family;
  std::string key;
  // kOnlyInA: only in the first database; kOnlyInB: only in the second.
  DiffKind kind;
  friend bool operator==(const DiffLine&, const DiffLine&) = default;
};

// Every key whose entry differs between a and b, ordered by (family, key).
// A family only one side has counts as all its keys being only on that side.
Status DiffDatabases(const LdbDb& a, const LdbDb& b, const std::optional<std::string>& family,
                     std::vector<DiffLine>* lines);

// How keys and values are printed and parsed.
// Printable ASCII as-is; other bytes, and the backslash, as \xNN.
std::string Escape(std::string_view bytes);
// "0x" and two upper-case digits per byte, as ldb prints with --hex.
std::string ToHex(std::string_view bytes);
// Hex digits in either case, with or without a leading "0x".
Status FromHex(std::string_view hex, std::string* bytes);

// A key or value as typed: hex (see FromHex) or the bytes as they are.
Status DecodeArg(std::string_view arg, bool hex, std::string* out);

// "+ KEY", "- KEY" or "~ KEY", the key escaped or in hex, prefixed "FAMILY:"
// when the family is not "default". No newline.
std::string FormatDiffLine(const DiffLine& line, bool key_hex);

enum class LdbCommand { kPut, kGet, kDelete, kScan, kRoot, kDiff, kRepair, kLoad, kAudit };

struct LdbRequest {
  LdbCommand command = LdbCommand::kScan;
  std::string db;            // --db
  std::string db2;           // --db2, diff only
  std::string options_file;  // --options-file: opens --db (and --db2) with it
  // --column_family. Unset: "default" for put, get and delete; every family
  // but "__sdiff" for scan, root and diff.
  std::optional<std::string> column_family;
  bool key_hex = false;    // --key_hex, or --hex
  bool value_hex = false;  // --value_hex, or --hex
  std::string key;         // put, get, delete: as typed (hex if key_hex)
  std::string value;       // put: as typed (hex if value_hex)

  // --master HOST:PORT: diff and repair compare --db with this master; put,
  // delete and load write through it (a master started with --allow-writers);
  // audit has it check its tree against its database.
  std::string master;
  std::string secret;    // from --secret-file; empty: none
  net::TlsOptions tls;   // --tls-ca, --tls-cert, --tls-key
  bool dry_run = false;  // repair: print what would change, change nothing
  std::string file;      // load: tab-separated KEY<TAB>VALUE lines; "-": stdin
  // --timeout: the whole command against a master (lookup, connect, every
  // session) ends within this, with an error; zero: no limit.
  std::chrono::milliseconds timeout{0};
  // put, delete, load through --master: print "seq N", the master sequence
  // the writes committed at or before, instead of "OK".
  bool print_seq = false;
  // get --min-seq: read --db (a live follower's replica) as a secondary once
  // it holds this master sequence, waiting up to wait_ms; 0: read at once.
  uint64_t min_seq = 0;
  std::chrono::milliseconds wait_ms{0};
};

// The commands that talk to a master (ldb_remote.cc): diff, repair, put,
// delete, load and audit with request.master set.
int RunRemoteLdb(const LdbRequest& request, std::ostream& out, std::ostream& err);

// Runs one command: its output to `out`, a summary (diff) or an error, as one
// line, to `err`. Returns the exit status.
int RunLdb(const LdbRequest& request, std::ostream& out, std::ostream& err);

// Writes "sdiff-ldb: <message>" to err on one line (newlines become spaces)
// and returns kExitError.
int ReportError(std::ostream& err, std::string_view message);

}  // namespace sdiff::tools
