// Small helpers the RocksDB tests share: a logger that prints nothing, a merge
// operator, and a whole-database scan to compare a master with its replica.
#pragma once

#include <rocksdb/compaction_filter.h>
#include <rocksdb/merge_operator.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace spdlog {
class logger;
}  // namespace spdlog

namespace sdiff::testing {

// Drops every key that starts with "drop" when a compaction reaches it: data
// that changes without a WAL record, which only the self-audit can find.
class DropPrefixFilter : public rocksdb::CompactionFilter {
 public:
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice&, std::string*,
              bool*) const override {
    return key.starts_with("drop");
  }
  const char* Name() const override { return "DropPrefixFilter"; }
};

// A logger that drops every line, so test output shows only failures.
std::shared_ptr<spdlog::logger> QuietLogger();

// Joins operands with ',' (a value of its own without an existing one).
class ConcatOperator : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& key, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* out, rocksdb::Logger*) const override;
  const char* Name() const override { return "ConcatOperator"; }
};

// (column family name, key) -> value
using FamilyContents = std::map<std::pair<std::string, std::string>, std::string>;

// Every key of `handles` but the follower's own "__sdiff" family; a scan
// error fails the test.
FamilyContents ScanAll(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& handles);

}  // namespace sdiff::testing
