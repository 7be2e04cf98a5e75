// The RocksDB options a program opens a database with: RocksDB's defaults, or
// an OPTIONS file as ldb and db_bench take it (--options-file), which is the
// format RocksDB itself writes into every database directory.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <string>
#include <vector>

#include "engine/status.h"
#include "plugin/replica_options.h"

namespace sdiff::tools {

struct RocksOptions {
  rocksdb::DBOptions db;
  // The families the file lists, with their options (none without a file).
  std::vector<rocksdb::ColumnFamilyDescriptor> families;

  // The options of family `name`: the file's for it, RocksDB's defaults for a
  // family the file does not list.
  rocksdb::ColumnFamilyOptions ForFamily(const std::string& name) const;
};

// `path` empty: RocksDB's defaults. Otherwise the file's options; a missing,
// unreadable or invalid file (an unknown option, a bad value, a comparator or
// merge operator RocksDB cannot build by name) is InvalidArgument, one line
// naming the file.
Status LoadRocksOptions(const std::string& path, RocksOptions* out);

// For a follower's replica: LoadRocksOptions, then the families the file does
// not list get RocksDB's defaults, and options under which the replica would
// not mirror the master (plugin::CheckReplicaOptions) are InvalidArgument too,
// one line naming the file.
Status LoadReplicaOptions(const std::string& path, plugin::ReplicaRocksOptions* out);

}  // namespace sdiff::tools
