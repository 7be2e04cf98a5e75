// InspectMaster: compares a RocksDB database with a master's through the diff
// protocol, and optionally repairs it, as an inspector: the master streams
// nothing to it and diffs it once. sdiff-ldb's `diff --master` and `repair
// --master` are this call.
//
// Families are matched by name: the master says which it replicates and their
// tags; the local database's families of the same names are compared, and
// local families the master does not replicate are left out. The database is
// only read unless `repair` is set; it never gets the follower's "__sdiff"
// bookkeeping, so repairing does not make it a follower.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/merkle_tree.h"
#include "engine/status.h"
#include "net/session_runner.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace sdiff::plugin {

// The local database's column family `name`: *handle is null when it has none
// and `create` is false; with `create`, a missing family is created.
using FamilyResolver =
    std::function<Status(const std::string& name, bool create, rocksdb::ColumnFamilyHandle**)>;

struct InspectOptions {
  net::ClientRunOptions connect;  // master address, TLS, timeouts
  std::string secret;             // shared secret; empty: none
  bool repair = false;            // write the master's entries into the database
};

struct KeyDifference {
  std::string family;  // column family name
  std::string key;
  // kOnlyInA: only in the local database; kOnlyInB: only on the master;
  // kValueDiffers: both hold the key with different values.
  DiffKind kind;
  friend bool operator==(const KeyDifference&, const KeyDifference&) = default;
};

struct InspectResult {
  std::vector<KeyDifference> differences;  // ordered by (family, key)
  uint64_t local_keys = 0;                 // keys compared on our side, before any repair
  std::vector<std::string> families;       // the families compared (the master's)
};

// Runs one diff against the master and fills *result (two connections: the
// first learns the master's families, so the local tree is read with no
// session waiting on it); with options.repair,
// applies each repair to the database as it arrives (atomically per master
// Repair frame) so the database ends equal to the master as of the diff.
Status InspectMaster(rocksdb::DB* db, const FamilyResolver& families, const InspectOptions& options,
                     InspectResult* result);

}  // namespace sdiff::plugin
