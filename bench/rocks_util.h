// Aids shared by the scenarios that run the RocksDB plugin: temporary
// directories, a logger that keeps stdout clean for --json, order statistics.
#pragma once

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/status.h"

namespace sdiff::bench {

// A fresh directory under $TMPDIR (default /tmp), removed with everything in it
// when destroyed.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/sdiff-bench-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      fmt::print(stderr, "sdiff-bench: cannot create a directory like {}\n", tmpl);
      std::exit(1);
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The plugin's errors go to stderr. Its info lines would land on stdout among
// the figures, and its warnings include one per follower disconnect, which
// every run ends with.
inline std::shared_ptr<spdlog::logger> BenchLogger(const std::string& name) {
  auto logger =
      std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_level(spdlog::level::err);
  return logger;
}

inline void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    fmt::print(stderr, "sdiff-bench: {}: {}\n", what, s.ToString());
    std::exit(1);
  }
}

inline void Check(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) {
    fmt::print(stderr, "sdiff-bench: {}: {}\n", what, s.ToString());
    std::exit(1);
  }
}

// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine.
inline int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Nearest-rank percentile (q in [0, 1]) of sorted samples; 0 when there are none.
template <typename T>
T Percentile(const std::vector<T>& sorted, double q) {
  if (sorted.empty()) return T{};
  size_t rank = static_cast<size_t>(q * sorted.size() + 0.999999);
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace sdiff::bench
