// Following a RocksDB database's WAL from file to file.
#include "plugin/wal_reader.h"

#include <rocksdb/transaction_log.h>
#include <spdlog/spdlog.h>

#include <utility>

namespace sdiff::plugin {
namespace {

// GetSortedWalFiles fails when a file goes (archived, purged) while it
// reads the directory; so does opening a file just listed. Tries before
// giving up.
constexpr int kListTries = 3;

std::string WalDir(rocksdb::DB* db) {
  std::string dir = db->GetDBOptions().wal_dir;
  return dir.empty() ? db->GetName() : dir;
}

}  // namespace

WalReader::WalReader(rocksdb::DB* db, std::shared_ptr<spdlog::logger> log)
    : db_(db),
      log_(std::move(log)),
      wal_dir_(WalDir(db)),
      recycled_(db->GetDBOptions().recycle_log_file_num > 0) {}

Status WalReader::List(rocksdb::VectorLogPtr* files) {
  rocksdb::Status s;
  for (int i = 0; i < kListTries; ++i) {
    files->clear();
    s = db_->GetSortedWalFiles(*files);
    if (s.ok()) return Status::OK();
  }
  return Status::IOError("listing the WAL files: " + s.ToString());
}

Status WalReader::Open(const rocksdb::LogFile& file) {
  file_.reset();
  file_ended_ = false;
  drained_ = false;
  // PathName() is relative to the WAL directory: "/000012.log", "/archive/000012.log".
  return WalFileReader::Open(db_->GetFileSystem(), wal_dir_ + file.PathName(), file.LogNumber(),
                             recycled_, &file_);
}

Status WalReader::Seek(uint64_t seq, bool from_oldest) {
  Status s;
  for (int i = 0; i < kListTries; ++i) {
    rocksdb::VectorLogPtr files;
    s = List(&files);
    if (!s.ok()) return s;
    if (files.empty()) {  // RocksDB lists a WAL file only once it holds a record
      std::unique_ptr<rocksdb::LogFile> current;
      rocksdb::Status cs = db_->GetCurrentWalFile(&current);
      if (!cs.ok()) return Status::IOError("finding the current WAL file: " + cs.ToString());
      return Open(*current);
    }
    size_t start = 0;
    for (size_t j = 0; j < files.size(); ++j) {
      if (from_oldest ? files[j]->Type() == rocksdb::kAliveLogFile
                      : files[j]->StartSequence() <= seq) {
        start = j;
        if (from_oldest) break;
      }
    }
    s = Open(*files[start]);
    if (!s.IsNotFound()) return s;  // NotFound: archived or purged since the listing
  }
  return s;
}

WalReader::Result WalReader::OpenNext(const rocksdb::LogFile& current, Status* error) {
  for (int i = 0; i < kListTries; ++i) {
    rocksdb::VectorLogPtr files;
    Status s = List(&files);
    if (!s.ok()) {
      *error = s;
      return Result::kError;
    }
    const rocksdb::LogFile* next = nullptr;
    for (const auto& f : files) {
      if (f->LogNumber() > file_->log_number()) {
        next = f.get();
        break;
      }
    }
    // RocksDB lists a WAL file only once it holds a record: the live one
    // may be missing.
    if (next == nullptr) next = &current;
    s = Open(*next);
    if (s.ok()) return Result::kRecord;
    if (!s.IsNotFound()) {
      *error = s;
      return Result::kError;
    }
  }
  return Result::kEnd;  // files went as they were listed: look again on the next call
}

WalReader::Result WalReader::Next(bool look_further, std::string* record, Status* error) {
  if (file_ == nullptr) {
    *error = Status::InvalidArgument("WalReader::Next before a successful Seek");
    return Result::kError;
  }
  for (;;) {
    if (!file_ended_) {
      WalFileReader::Result r = file_->Next(record, error);
      if (r == WalFileReader::Result::kRecord) return Result::kRecord;
      if (r == WalFileReader::Result::kCorrupt) {
        file_ended_ = true;
        log_->warn("{}; reading on from the next WAL file", error->message());
      }
    }
    if (!look_further) return Result::kEnd;
    std::unique_ptr<rocksdb::LogFile> current;
    rocksdb::Status s = db_->GetCurrentWalFile(&current);
    if (!s.ok()) {
      *error = Status::IOError("finding the current WAL file: " + s.ToString());
      return Result::kError;
    }
    if (current->LogNumber() <= file_->log_number()) {
      if (file_ended_) {
        // The live file is corrupt before its end: what follows cannot be read.
        *error = Status::Corruption("the live WAL file " + file_->path() +
                                    " cannot be read past a corrupt record");
        return Result::kError;
      }
      return Result::kEnd;
    }
    if (!drained_ && !file_ended_) {
      // A newer file exists, so this one is complete: read what reached it
      // after the last look, then move on.
      drained_ = true;
      continue;
    }
    Result r = OpenNext(*current, error);
    if (r != Result::kRecord) return r;
  }
}

}  // namespace sdiff::plugin
