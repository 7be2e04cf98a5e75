// The master's database files for a cloner: what to send, kept from deletion
// while they are read.
#include "plugin/db_files.h"

#include <fcntl.h>
#include <rocksdb/comparator.h>
#include <rocksdb/db.h>
#include <rocksdb/metadata.h>
#include <rocksdb/options.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <string>

namespace sdiff::plugin {
namespace {

class DbFiles : public FileSource {
 public:
  explicit DbFiles(rocksdb::DB* db) : db_(db) {}
  ~DbFiles() override {
    CloseFile();
    if (pinned_) db_->EnableFileDeletions(/*force=*/false);  // only our DisableFileDeletions
  }

  Status Collect() {
    rocksdb::Status rs = db_->DisableFileDeletions();
    if (!rs.ok()) return Status::IOError("cannot keep the database files: " + rs.ToString());
    pinned_ = true;
    rocksdb::LiveFilesStorageInfoOptions options;
    // Never flush: the caller's memtables are the caller's business, and the
    // copy takes the live WAL files instead.
    options.wal_size_for_flush = std::numeric_limits<uint64_t>::max();
    std::vector<rocksdb::LiveFileStorageInfo> live;
    rs = db_->GetLiveFilesStorageInfo(options, &live);
    if (!rs.ok()) return Status::IOError("cannot list the database files: " + rs.ToString());
    for (rocksdb::LiveFileStorageInfo& f : live) {
      if (f.file_type == rocksdb::kOptionsFile || f.file_type == rocksdb::kIdentityFile) continue;
      std::string name = f.relative_filename;
      if (!name.empty() && name.front() == '/') name.erase(0, 1);
      if (name.empty() || name.find('/') != std::string::npos) {
        return Status::InvalidArgument("a database file outside its directory: " +
                                       f.relative_filename);
      }
      files_.push_back(File{name, f.size});
      paths_.push_back(f.directory + "/" + name);
      contents_.push_back(std::move(f.replacement_contents));
    }
    return Status::OK();
  }

  const std::vector<File>& files() const override { return files_; }

  Status Read(size_t index, uint64_t offset, size_t max_bytes, std::string* out) override {
    if (index >= files_.size()) return Status::InvalidArgument("no such file");
    uint64_t left = files_[index].size > offset ? files_[index].size - offset : 0;
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, max_bytes));
    if (!contents_[index].empty()) {  // CURRENT, as of the copy
      out->assign(contents_[index], static_cast<size_t>(offset), n);
      return Status::OK();
    }
    if (open_index_ != index) {
      CloseFile();
      fd_ = ::open(paths_[index].c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ < 0) return Status::IOError("cannot open " + paths_[index] + ": " + strerror(errno));
      open_index_ = index;
    }
    out->resize(n);  // the previous chunk's size already, mostly: no zero fill
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd_, out->data() + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Status::IOError("cannot read " + paths_[index] + ": " + strerror(errno));
      if (r == 0) break;  // shorter than listed: the session reports it
      got += static_cast<size_t>(r);
    }
    out->resize(got);
    return Status::OK();
  }

 private:
  void CloseFile() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    open_index_ = std::numeric_limits<size_t>::max();
  }

  rocksdb::DB* db_;
  bool pinned_ = false;
  std::vector<File> files_;
  std::vector<std::string> paths_;
  std::vector<std::string> contents_;  // non-empty: send this, not the file on disk
  int fd_ = -1;
  size_t open_index_ = std::numeric_limits<size_t>::max();
};

// RocksDB fills in the database directory itself when no paths are given.
bool OnlyIn(const std::vector<rocksdb::DbPath>& paths, const std::string& dir) {
  return std::all_of(paths.begin(), paths.end(),
                     [&](const rocksdb::DbPath& p) { return p.path == dir; });
}

Status CheckCopyable(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& replicated) {
  rocksdb::DBOptions db_options = db->GetDBOptions();
  if (!OnlyIn(db_options.db_paths, db->GetName())) {
    return Status::InvalidArgument("the master keeps files outside its directory (db_paths)");
  }
  if (db_options.two_write_queues) {
    // The MANIFEST may count sequences allocated but not yet published.
    return Status::InvalidArgument("the master uses two_write_queues");
  }
  if (db_options.allow_2pc) {
    // Its WAL may hold prepared transactions, which only a TransactionDB opens.
    return Status::InvalidArgument("the master's WAL may hold two-phase commit records");
  }
  std::vector<std::string> names;
  rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(db_options, db->GetName(), &names);
  if (!rs.ok()) return Status::IOError("cannot list the column families: " + rs.ToString());
  std::set<std::string> all(names.begin(), names.end());
  std::set<std::string> served;
  for (rocksdb::ColumnFamilyHandle* handle : replicated) {
    served.insert(handle->GetName());
    rocksdb::ColumnFamilyDescriptor d;
    rs = handle->GetDescriptor(&d);
    if (!rs.ok()) return Status::IOError("cannot read column family options: " + rs.ToString());
    const std::string& name = handle->GetName();
    if (d.options.comparator != rocksdb::BytewiseComparator()) {
      return Status::InvalidArgument("column family '" + name + "' has comparator " +
                                     d.options.comparator->Name() + ", not the bytewise one");
    }
    if (d.options.merge_operator) {
      return Status::InvalidArgument("column family '" + name +
                                     "' has a merge operator: its files hold unresolved operands");
    }
    if (!OnlyIn(d.options.cf_paths, db->GetName())) {
      return Status::InvalidArgument("column family '" + name +
                                     "' keeps files outside the directory (cf_paths)");
    }
  }
  for (const std::string& name : all) {
    if (served.count(name) == 0) {
      return Status::InvalidArgument("column family '" + name +
                                     "' is not replicated, and its data is in the files");
    }
  }
  return Status::OK();
}

}  // namespace

Status OpenDbFiles(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& replicated,
                   std::unique_ptr<FileSource>* out) {
  Status s = CheckCopyable(db, replicated);
  if (!s.ok()) return s;
  auto files = std::make_unique<DbFiles>(db);
  s = files->Collect();
  if (!s.ok()) return s;
  *out = std::move(files);
  return Status::OK();
}

}  // namespace sdiff::plugin
