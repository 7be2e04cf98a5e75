// RocksDB statuses in sdiff's terms (see rocks_status.h).
#include "plugin/rocks_status.h"

#include <fmt/format.h>

#include <string>

namespace sdiff::plugin {

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  std::string msg = fmt::format("{}: {}", what, s.ToString());
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  return Status::IOError(msg);
}

bool IsLockHeld(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  // RocksDB's PosixFileSystem::LockFile words both failures so.
  std::string text = s.ToString();
  return text.find("While lock file") != std::string::npos ||
         text.find("lock hold by current process") != std::string::npos;
}

}  // namespace sdiff::plugin
