// Helpers the RocksDB tests share (see rocks_util.h).
#include "test/support/rocks_util.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

namespace sdiff::testing {

std::shared_ptr<spdlog::logger> QuietLogger() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

bool ConcatOperator::Merge(const rocksdb::Slice&, const rocksdb::Slice* existing,
                           const rocksdb::Slice& value, std::string* out, rocksdb::Logger*) const {
  *out = existing ? existing->ToString() + "," + value.ToString() : value.ToString();
  return true;
}

FamilyContents ScanAll(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
  FamilyContents out;
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    if (h->GetName() == "__sdiff") continue;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out[{h->GetName(), it->key().ToString()}] = it->value().ToString();
    }
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
  }
  return out;
}

}  // namespace sdiff::testing
