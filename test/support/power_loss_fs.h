// A RocksDB FileSystem that remembers, for every file written through it, how
// many of its bytes were synced (Sync, Fsync), so a test can copy a database
// as a power loss would leave it: each such file cut back to its synced
// length. Files it did not write (older ones) are copied whole. What a power
// loss also undoes, a rename or a new directory entry not yet synced, is not
// modelled: RocksDB syncs its directory after each, and the tests here only
// ask about appended data (the WAL).
#pragma once

#include <rocksdb/file_system.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace sdiff::testing {

class PowerLossFileSystem : public rocksdb::FileSystemWrapper {
 public:
  PowerLossFileSystem();
  const char* Name() const override { return "PowerLossFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* out,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* out,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& path, const std::string& old_path,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* out,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& from, const std::string& to,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& path, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;

  // Copies every file of the directory `from` into `to` (created), each file
  // written through this FileSystem cut to its synced length. Returns false
  // (and says why on stderr) if a file cannot be copied.
  bool CopyAsAfterPowerLoss(const std::string& from, const std::string& to);

  // Bytes synced of `path`, or -1 if it was not written through this FileSystem.
  int64_t synced_bytes(const std::string& path);

 private:
  class File;
  struct Lengths {
    uint64_t written = 0;
    uint64_t synced = 0;
  };
  rocksdb::IOStatus Track(const std::string& path, uint64_t existing,
                          std::unique_ptr<rocksdb::FSWritableFile>* out);

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Lengths>> files_;  // GUARDED_BY(mu_); by normalized path
};

}  // namespace sdiff::testing
