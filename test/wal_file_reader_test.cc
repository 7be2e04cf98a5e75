// WalFileReader against WAL files RocksDB itself wrote: every record comes
// back whole (one that spans blocks too), a file read while it grows yields
// what is complete and then the rest, and a flipped byte is reported.
#include "plugin/wal_file_reader.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace sdiff::plugin {
namespace {

class WalFileReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-walfile-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes batches of these value sizes, one batch each, into a fresh DB;
  // returns the bytes of the WAL file that holds them.
  // `recycle`: the DB reuses WAL files, and first fills one that it then
  // reuses, with older, longer values.
  std::string WriteWal(const std::vector<size_t>& sizes, bool recycle = false) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.avoid_flush_during_shutdown = true;
    if (recycle) {  // RocksDB recycles only without WAL retention, and in this mode
      o.wal_recovery_mode = rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords;
      o.recycle_log_file_num = 1;
    }
    rocksdb::DB* raw = nullptr;
    EXPECT_TRUE(rocksdb::DB::Open(o, dir_ + "/db", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    EXPECT_EQ(db->GetDBOptions().recycle_log_file_num, recycle ? 1u : 0u);
    if (recycle) {
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 20; ++i) {
          EXPECT_TRUE(db->Put({}, "old" + std::to_string(i), std::string(3000, 'o')).ok());
        }
        EXPECT_TRUE(db->Flush({}).ok());  // the WAL file goes back to the pool
      }
    }
    for (size_t i = 0; i < sizes.size(); ++i) {
      rocksdb::WriteBatch batch;
      EXPECT_TRUE(batch.Put("key" + std::to_string(i), std::string(sizes[i], 'a' + i % 26)).ok());
      EXPECT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());
    }
    // Read while the DB is open: closing a WAL file truncates it to what it wrote.
    std::string wal;
    for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/db")) {
      if (entry.path().extension() != ".log") continue;
      uint64_t number = std::stoull(entry.path().stem().string());
      if (number < log_number_) continue;  // the newest is the one written last
      log_number_ = number;
      std::ifstream in(entry.path(), std::ios::binary);
      wal.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    db.reset();
    return wal;
  }

  void WriteFile(const std::string& bytes) {
    std::ofstream out(Path(), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::string Path() const { return dir_ + "/copy.log"; }

  std::unique_ptr<WalFileReader> Open(bool recycled = false) {
    std::unique_ptr<WalFileReader> reader;
    Status s = WalFileReader::Open(rocksdb::FileSystem::Default().get(), Path(), log_number_,
                                   recycled, &reader);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return reader;
  }

  // The value size of each record read until the reader stops; *last: why.
  std::vector<size_t> ReadAll(WalFileReader* reader, WalFileReader::Result* last, Status* error) {
    std::vector<size_t> sizes;
    std::string record;
    while ((*last = reader->Next(&record, error)) == WalFileReader::Result::kRecord) {
      rocksdb::WriteBatch batch(record);
      struct Sizes : rocksdb::WriteBatch::Handler {
        std::vector<size_t>* out;
        void Put(const rocksdb::Slice&, const rocksdb::Slice& value) override {
          out->push_back(value.size());
        }
      } handler;
      handler.out = &sizes;
      EXPECT_TRUE(batch.Iterate(&handler).ok());
    }
    return sizes;
  }

  std::string dir_;
  uint64_t log_number_ = 0;
};

TEST_F(WalFileReaderTest, ReadsEveryRecordRocksDbWrote) {
  // 100 KiB spans four 32 KiB blocks: FIRST, MIDDLE, MIDDLE, LAST.
  std::vector<size_t> sizes = {10, 0, 100 << 10, 7, 32 << 10, 3};
  WriteFile(WriteWal(sizes));
  auto reader = Open();
  WalFileReader::Result last;
  Status error;
  EXPECT_EQ(ReadAll(reader.get(), &last, &error), sizes);
  EXPECT_EQ(last, WalFileReader::Result::kEnd) << error.ToString();
}

// The tailer reads a file RocksDB is appending to: a record cut anywhere
// (in a header, a payload, between fragments) is not returned until it is
// complete, and reading goes on from there.
TEST_F(WalFileReaderTest, AGrowingFileYieldsWhatIsCompleteThenTheRest) {
  std::vector<size_t> sizes = {10, 100 << 10, 5, 70 << 10, 1};
  const std::string wal = WriteWal(sizes);
  for (size_t cut : {size_t{3}, size_t{20}, size_t{40000}, size_t{70000}, wal.size() - 2}) {
    WriteFile(wal.substr(0, cut));
    auto reader = Open();
    WalFileReader::Result last;
    Status error;
    std::vector<size_t> got = ReadAll(reader.get(), &last, &error);
    EXPECT_EQ(last, WalFileReader::Result::kEnd) << "cut at " << cut << ": " << error.ToString();
    ASSERT_LT(got.size(), sizes.size()) << "cut at " << cut;
    WriteFile(wal);  // the rest arrives
    std::vector<size_t> rest = ReadAll(reader.get(), &last, &error);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, sizes) << "cut at " << cut;
    EXPECT_EQ(last, WalFileReader::Result::kEnd) << error.ToString();
  }
}

// A reused file holds its previous life's records after the new ones: only
// records tagged with the file's own log number are read.
TEST_F(WalFileReaderTest, ARecycledFileYieldsOnlyItsOwnRecords) {
  // The size of the old records, so that the old ones after them start where
  // a new one would: only their log number tells them apart.
  std::vector<size_t> sizes = {3000, 3000, 3000};
  const std::string wal = WriteWal(sizes, /*recycle=*/true);
  ASSERT_GT(wal.size(), 40000u) << "the file should hold its previous life's records";
  WriteFile(wal);
  auto reader = Open(/*recycled=*/true);
  WalFileReader::Result last;
  Status error;
  EXPECT_EQ(ReadAll(reader.get(), &last, &error), sizes);
  EXPECT_EQ(last, WalFileReader::Result::kEnd) << error.ToString();
}

TEST_F(WalFileReaderTest, AFlippedByteIsCorruption) {
  std::string wal = WriteWal({10, 20, 30});
  wal[wal.size() - 5] ^= 0x40;  // in the last record's value
  WriteFile(wal);
  auto reader = Open();
  WalFileReader::Result last;
  Status error;
  EXPECT_EQ(ReadAll(reader.get(), &last, &error).size(), 2u);
  EXPECT_EQ(last, WalFileReader::Result::kCorrupt);
  EXPECT_NE(error.message().find("checksum mismatch"), std::string::npos) << error.ToString();
}

// The stored checksum itself wrong, the record intact: refused just the same.
TEST_F(WalFileReaderTest, AWrongChecksumIsCorruption) {
  std::string wal = WriteWal({10, 20, 30});
  // The first record: checksum (4) | length (2) | type (1) | payload.
  const size_t first_length = static_cast<uint8_t>(wal[4]) | static_cast<uint8_t>(wal[5]) << 8;
  const size_t second = 7 + first_length;
  wal[second + 1] ^= 0x01;  // one bit of the second record's checksum
  WriteFile(wal);
  auto reader = Open();
  WalFileReader::Result last;
  Status error;
  EXPECT_EQ(ReadAll(reader.get(), &last, &error), std::vector<size_t>{10});
  EXPECT_EQ(last, WalFileReader::Result::kCorrupt);
  EXPECT_NE(error.message().find("checksum mismatch at offset " + std::to_string(second)),
            std::string::npos)
      << error.ToString();
}

}  // namespace
}  // namespace sdiff::plugin
