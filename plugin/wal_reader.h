// WalReader: a database's WAL, record after record across its files, read
// while RocksDB writes it (see WalFileReader for the format and why sdiff
// reads the WAL itself). It finds files through DB::GetSortedWalFiles (live
// and archived) and DB::GetCurrentWalFile, and keeps the file it reads open,
// so that RocksDB may archive or delete it meanwhile.
//
// It does not judge sequence numbers: the tailer checks that each record
// continues the last, and treats anything else as a gap.
// Not thread-safe.
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"
#include "plugin/wal_file_reader.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

class WalReader {
 public:
  enum class Result {
    kRecord,  // *record holds the next WriteBatch's rep
    kEnd,     // nothing more for now
    kError,   // *error says what
  };

  // No I/O; Seek() before Next().
  WalReader(rocksdb::DB* db, std::shared_ptr<spdlog::logger> log);
  WalReader(const WalReader&) = delete;
  WalReader& operator=(const WalReader&) = delete;

  // Positions at the start of the newest WAL file whose first record is at
  // or before `seq`, or of the oldest live (not archived) file when
  // `from_oldest`: RocksDB keeps every WAL file that holds a prepared,
  // unfinished transaction live, and the caller reads its records from there.
  Status Seek(uint64_t seq, bool from_oldest);

  // The next record. At the end of the file in hand it looks for a newer
  // file only when `look_further` (the caller knows the database holds more
  // than it has read): then the file in hand is complete once a newer one
  // exists. A corrupt record in a file that a newer one follows ends that
  // file (RocksDB's own recovery stops there too): it is logged, and the
  // records it hid show as a gap in the sequence numbers.
  Result Next(bool look_further, std::string* record, Status* error);

 private:
  Status List(rocksdb::VectorLogPtr* files);
  Status Open(const rocksdb::LogFile& file);
  // Opens the first file after the one in hand (`current`, the live file,
  // if no other). kRecord: opened.
  Result OpenNext(const rocksdb::LogFile& current, Status* error);

  rocksdb::DB* const db_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::string wal_dir_;  // Constant after construction
  const bool recycled_;        // the database reuses WAL files
  std::unique_ptr<WalFileReader> file_;
  bool file_ended_ = false;  // a corrupt record ended file_
  bool drained_ = false;     // file_ was read to its end after a newer file appeared
};

}  // namespace sdiff::plugin
