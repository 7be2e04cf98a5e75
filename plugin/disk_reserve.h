// DiskReserve: keeps a database's disk from filling up through our own
// writes. RocksDB 7.8, as Debian builds it, can abort the process on the
// write after one that failed for want of room, and stops taking writes
// until it is resumed; so a follower stops applying, and a master refuses
// writes through it, while the disk has less than a reserve free. RocksDB's
// own flushes and compactions then still find room.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/status.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct DiskReserveOptions {
  std::string path;             // on the disk to watch (the database's directory)
  uint64_t min_free_bytes = 0;  // 0: no check
  // Who keeps the reserve and what it refuses meanwhile, for the log and
  // the error: "the follower" "stops applying".
  std::string who;
  std::string refusal;
  // Testing seam: the free bytes on the disk holding `path`. Default:
  // std::filesystem::space's `available`.
  std::function<uint64_t(const std::string& path)> free_bytes;
  std::shared_ptr<spdlog::logger> logger;
};

// Thread-safe.
class DiskReserve {
 public:
  explicit DiskReserve(DiskReserveOptions options);

  // OK when the disk has min_free_bytes plus twice `bytes` (a write of that
  // size, and room for RocksDB to flush it) free, or when it cannot tell.
  // Otherwise an IOError saying so. Logs an error when room runs short and
  // an info line when there is room again, once each.
  Status Check(size_t bytes);

 private:
  const DiskReserveOptions options_;
  net::Mutex mu_;
  bool short_ GUARDED_BY(mu_) = false;  // the last Check failed
};

}  // namespace sdiff::plugin
