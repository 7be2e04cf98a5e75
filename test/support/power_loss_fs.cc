// PowerLossFileSystem: counts written and synced bytes per file, and copies a
// directory as a power loss would leave it.
#include "test/support/power_loss_fs.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>
#include <vector>

namespace sdiff::testing {
namespace {

std::string Normal(const std::string& path) {
  return std::filesystem::path(path).lexically_normal().string();
}

}  // namespace

// Forwards to the real file, and records what reached it and what was synced.
class PowerLossFileSystem::File : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  File(std::unique_ptr<rocksdb::FSWritableFile> target, std::mutex* mu,
       std::shared_ptr<Lengths> lengths)
      : FSWritableFileOwnerWrapper(std::move(target)), mu_(mu), lengths_(std::move(lengths)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->Append(data, options, dbg);
    if (s.ok()) Wrote(data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->Append(data, options, info, dbg);
    if (s.ok()) Wrote(data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->PositionedAppend(data, offset, options, dbg);
    if (s.ok()) WroteAt(offset + data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->PositionedAppend(data, offset, options, info, dbg);
    if (s.ok()) WroteAt(offset + data.size());
    return s;
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->Truncate(size, options, dbg);
    if (s.ok()) {
      std::lock_guard lock(*mu_);
      lengths_->written = size;
      if (lengths_->synced > size) lengths_->synced = size;
    }
    return s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->Sync(options, dbg);
    if (s.ok()) Synced();
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->Fsync(options, dbg);
    if (s.ok()) Synced();
    return s;
  }

 private:
  void Wrote(uint64_t n) {
    std::lock_guard lock(*mu_);
    lengths_->written += n;
  }
  void WroteAt(uint64_t end) {
    std::lock_guard lock(*mu_);
    if (end > lengths_->written) lengths_->written = end;
  }
  void Synced() {
    std::lock_guard lock(*mu_);
    lengths_->synced = lengths_->written;
  }

  std::mutex* mu_;
  std::shared_ptr<Lengths> lengths_;
};

PowerLossFileSystem::PowerLossFileSystem()
    : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}

rocksdb::IOStatus PowerLossFileSystem::Track(const std::string& path, uint64_t existing,
                                             std::unique_ptr<rocksdb::FSWritableFile>* out) {
  auto lengths = std::make_shared<Lengths>();
  // What the file held when it was opened is treated as synced: a file is
  // reopened only by RocksDB's own recovery, after it synced it.
  lengths->written = lengths->synced = existing;
  {
    std::lock_guard lock(mu_);
    files_[Normal(path)] = lengths;
  }
  *out = std::make_unique<File>(std::move(*out), &mu_, std::move(lengths));
  return rocksdb::IOStatus::OK();
}

rocksdb::IOStatus PowerLossFileSystem::NewWritableFile(
    const std::string& path, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* out, rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->NewWritableFile(path, options, out, dbg);
  return s.ok() ? Track(path, 0, out) : s;
}

rocksdb::IOStatus PowerLossFileSystem::ReopenWritableFile(
    const std::string& path, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* out, rocksdb::IODebugContext* dbg) {
  std::error_code ec;
  uintmax_t size = std::filesystem::file_size(path, ec);
  rocksdb::IOStatus s = target()->ReopenWritableFile(path, options, out, dbg);
  return s.ok() ? Track(path, ec ? 0 : size, out) : s;
}

rocksdb::IOStatus PowerLossFileSystem::ReuseWritableFile(
    const std::string& path, const std::string& old_path, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* out, rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->ReuseWritableFile(path, old_path, options, out, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard lock(mu_);
    files_.erase(Normal(old_path));
  }
  return Track(path, 0, out);
}

rocksdb::IOStatus PowerLossFileSystem::RenameFile(const std::string& from, const std::string& to,
                                                  const rocksdb::IOOptions& options,
                                                  rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->RenameFile(from, to, options, dbg);
  if (s.ok()) {
    std::lock_guard lock(mu_);
    auto it = files_.find(Normal(from));
    if (it != files_.end()) {
      files_[Normal(to)] = it->second;
      files_.erase(it);
    } else {
      files_.erase(Normal(to));
    }
  }
  return s;
}

rocksdb::IOStatus PowerLossFileSystem::DeleteFile(const std::string& path,
                                                  const rocksdb::IOOptions& options,
                                                  rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = target()->DeleteFile(path, options, dbg);
  if (s.ok()) {
    std::lock_guard lock(mu_);
    files_.erase(Normal(path));
  }
  return s;
}

int64_t PowerLossFileSystem::synced_bytes(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(Normal(path));
  return it == files_.end() ? -1 : static_cast<int64_t>(it->second->synced);
}

bool PowerLossFileSystem::CopyAsAfterPowerLoss(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", to.c_str(), ec.message().c_str());
    return false;
  }
  for (const fs::directory_entry& entry : fs::directory_iterator(from, ec)) {
    if (!entry.is_regular_file()) continue;
    const std::string source = entry.path().string();
    std::ifstream in(source, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "cannot read %s\n", source.c_str());
      return false;
    }
    int64_t synced = synced_bytes(source);
    if (synced >= 0 && static_cast<uint64_t>(synced) < bytes.size()) bytes.resize(synced);
    std::ofstream out((fs::path(to) / entry.path().filename()).string(), std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) {
      std::fprintf(stderr, "cannot write the copy of %s\n", source.c_str());
      return false;
    }
  }
  if (ec) {
    std::fprintf(stderr, "cannot list %s: %s\n", from.c_str(), ec.message().c_str());
    return false;
  }
  return true;
}

}  // namespace sdiff::testing
