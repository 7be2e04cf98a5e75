// DiskReserve: free space checked before each write of ours.
#include "plugin/disk_reserve.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <system_error>
#include <utility>

namespace sdiff::plugin {

namespace {

DiskReserveOptions WithLogger(DiskReserveOptions options) {
  if (!options.logger) options.logger = spdlog::default_logger();
  return options;
}

}  // namespace

DiskReserve::DiskReserve(DiskReserveOptions options) : options_(WithLogger(std::move(options))) {}

Status DiskReserve::Check(size_t bytes) {
  if (options_.min_free_bytes == 0) return Status::OK();
  uint64_t free = 0;
  if (options_.free_bytes) {
    free = options_.free_bytes(options_.path);
  } else {
    std::error_code ec;
    std::filesystem::space_info space = std::filesystem::space(options_.path, ec);
    if (ec) return Status::OK();  // cannot tell: let RocksDB try
    free = space.available;
  }
  const uint64_t need = options_.min_free_bytes + 2 * uint64_t{bytes};
  net::MutexLock lock(&mu_);
  if (free >= need) {
    if (short_) {
      options_.logger->info("{}: the disk has room again ({} MiB free); {} goes on", options_.path,
                            free >> 20, options_.who);
    }
    short_ = false;
    return Status::OK();
  }
  const std::string why = fmt::format(
      "the disk holding {} has {} MiB free; {} keeps {} MiB free and {} until there is room",
      options_.path, free >> 20, options_.who, options_.min_free_bytes >> 20, options_.refusal);
  if (!short_) options_.logger->error("{}", why);
  short_ = true;
  return Status::IOError(why);
}

}  // namespace sdiff::plugin
