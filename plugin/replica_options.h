// The RocksDB options a follower's replica opens with: the database's, and
// each column family's by name (an OPTIONS file's, for instance, as
// tools/rocks_options.h loads it). sdiff sets on top what it needs (see
// ReplicaDbOptions and ReplicaFamilyOptions in plugin/follower_store.cc):
// create_if_missing as the follower asks, create_missing_column_families, the
// Env seam, and RocksDB's defaults for its own "__sdiff" family.
#pragma once

#include <rocksdb/options.h>

#include <map>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace sdiff::plugin {

struct ReplicaRocksOptions {
  rocksdb::DBOptions db;  // Default: RocksDB's
  // The options of the families named here, by name.
  std::map<std::string, rocksdb::ColumnFamilyOptions, std::less<>> families;
  // The options of every other family (one the master adds later, say), but
  // "__sdiff", which always has RocksDB's defaults. Default: RocksDB's.
  rocksdb::ColumnFamilyOptions other_families;

  rocksdb::ColumnFamilyOptions ForFamily(std::string_view name) const;
};

// Refuses options under which the replica would not mirror the master, each
// with a one-line InvalidArgument naming the family or option: a comparator
// other than the bytewise one (the master replicates only bytewise-ordered
// families, and range deletes must cover the same keys on both sides); a
// compaction filter, a compaction filter factory or FIFO compaction (they
// drop data the replica's tree still counts, which no diff would repair
// until an audit); unordered_write (a snapshot, as the audit takes, may miss
// writes older than it); error_if_exists (a follower reopens its replica).
Status CheckReplicaOptions(const ReplicaRocksOptions& options);

}  // namespace sdiff::plugin
