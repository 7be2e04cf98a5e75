// The checks on a replica's RocksDB options (plugin/replica_options.h).
#include "plugin/replica_options.h"

#include <rocksdb/compaction_filter.h>
#include <rocksdb/comparator.h>

#include "plugin/follower_store.h"

namespace sdiff::plugin {
namespace {

Status CheckFamily(const std::string& name, const rocksdb::ColumnFamilyOptions& o) {
  const rocksdb::Comparator* bytewise = rocksdb::BytewiseComparator();
  if (o.comparator != nullptr && o.comparator != bytewise &&
      std::string(o.comparator->Name()) != bytewise->Name()) {
    return Status::InvalidArgument(name + " uses comparator '" + o.comparator->Name() +
                                   "': a replica orders keys bytewise, as the master does");
  }
  std::string cause;
  if (o.compaction_filter != nullptr) {
    cause = std::string("compaction filter '") + o.compaction_filter->Name() + "'";
  } else if (o.compaction_filter_factory != nullptr) {
    cause = std::string("compaction filter factory '") + o.compaction_filter_factory->Name() + "'";
  } else if (o.compaction_style == rocksdb::kCompactionStyleFIFO) {
    cause = "FIFO compaction (it deletes whole files)";
  }
  if (cause.empty()) return Status::OK();
  return Status::InvalidArgument(name + " has " + cause +
                                 ": it would drop replicated data the replica's tree still counts");
}

}  // namespace

rocksdb::ColumnFamilyOptions ReplicaRocksOptions::ForFamily(std::string_view name) const {
  auto it = families.find(name);
  return it == families.end() ? other_families : it->second;
}

Status CheckReplicaOptions(const ReplicaRocksOptions& options) {
  if (options.db.error_if_exists) {
    return Status::InvalidArgument(
        "error_if_exists is on: the follower reopens its replica every time it starts");
  }
  if (options.db.unordered_write) {
    return Status::InvalidArgument(
        "unordered_write is on: a snapshot may miss older writes, so the replica's self-audit "
        "would see differences that are not there");
  }
  for (const auto& [name, family] : options.families) {
    if (name == kMetaFamily) continue;  // always RocksDB's defaults
    Status s = CheckFamily("column family '" + name + "'", family);
    if (!s.ok()) return s;
  }
  return CheckFamily("the options for families not named", options.other_families);
}

}  // namespace sdiff::plugin
