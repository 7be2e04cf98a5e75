// WalFileReader: the logical records of one RocksDB WAL file, read while
// RocksDB appends to it. sdiff reads the WAL itself rather than through
// DB::GetUpdatesSince, whose iterator in RocksDB 7.8 asserts (aborting the
// application's process) on a prepared transaction's record and on a record
// read ahead of the database's published sequence.
//
// The format is RocksDB's log format (LevelDB's, plus recyclable records):
// the file is a run of 32 KiB blocks of physical records,
//   checksum (4 bytes, masked crc32c) | length (2) | type (1) | payload
// and, for the recyclable types 5-8, the file's log number (4) after the
// type, so that a reused file's stale records are told apart. The checksum
// covers the type, the log number if any, and the payload. A logical record
// (one WriteBatch's rep) is one FULL record or FIRST, MIDDLE..., LAST
// fragments. A block's last < header-size bytes are zero padding.
//
// Reading stops where what is complete on disk ends and goes on from there on
// the next call. Not thread-safe.
#pragma once

#include <rocksdb/file_system.h>

#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"

namespace sdiff::plugin {

class WalFileReader {
 public:
  enum class Result {
    kRecord,   // *record holds the next logical record
    kEnd,      // nothing complete after the last record, for now
    kCorrupt,  // *error says what; the file cannot be read past it
  };

  // Opens `path` through `fs` (the database's file system, so that an
  // encrypting or remote Env reads what RocksDB wrote). `log_number`: the
  // file's number, which recyclable records must carry. `recycled`: the
  // database reuses WAL files (recycle_log_file_num), so only recyclable
  // records are this file's own.
  static Status Open(rocksdb::FileSystem* fs, const std::string& path, uint64_t log_number,
                     bool recycled, std::unique_ptr<WalFileReader>* out);
  WalFileReader(const WalFileReader&) = delete;
  WalFileReader& operator=(const WalFileReader&) = delete;

  Result Next(std::string* record, Status* error);
  uint64_t log_number() const { return log_number_; }
  const std::string& path() const { return path_; }

 private:
  WalFileReader(std::unique_ptr<rocksdb::FSRandomAccessFile> file, std::string path,
                uint64_t log_number, bool recycled);
  // The physical record at pos_; advances pos_ past it on kRecord.
  Result ReadPhysical(uint8_t* type, std::string_view* payload, Status* error);
  // Makes the file's bytes [pos_, end) available in buf_; false when the file
  // is shorter (so far).
  bool Fill(uint64_t end);

  const std::unique_ptr<rocksdb::FSRandomAccessFile> file_;
  const std::string path_;
  const uint64_t log_number_;
  std::string buf_;         // the file's bytes from buf_start_ on
  uint64_t buf_start_ = 0;  // file offset of buf_[0]
  uint64_t pos_ = 0;        // file offset of the next physical record
  // Where Fill reads to, kept between calls: a tailer polled a thousand
  // times a second would otherwise allocate and zero a chunk each time.
  std::unique_ptr<char[]> scratch_;
  size_t scratch_size_ = 0;
  std::string fragments_;  // a logical record's fragments read so far
  bool in_fragments_ = false;
  bool recyclable_;  // the file holds recyclable records: other bytes are old
};

}  // namespace sdiff::plugin
