// The self-audit's comparison and its schedule.
#include "plugin/audit.h"

#include <fmt/ranges.h>
#include <pthread.h>
#include <rocksdb/db.h>
#include <spdlog/spdlog.h>

#include <chrono>

namespace sdiff::plugin {

Status FindTreeMismatches(rocksdb::DB* db, const rocksdb::Snapshot* snapshot,
                          const TaggedFamilies& families, const TreeView& tree,
                          const TreeScanOptions& scan, std::vector<DiffEntry>* differing,
                          uint64_t* keys) {
  MerkleTree reference(tree.hasher());
  Status s = ScanIntoTree(db, snapshot, families, scan, &reference);
  if (!s.ok()) return s;
  *keys = reference.size();
  *differing = Diff(tree, reference);  // skips equal subtrees: cheap when all is well
  return Status::OK();
}

std::string PrintableKey(const std::string& family, std::string_view key) {
  constexpr size_t kMaxShown = 64;
  std::string out = family + ":";
  for (size_t i = 0; i < key.size() && i < kMaxShown; ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (key.size() > kMaxShown) out += "...";
  return out;
}

Auditor::Auditor(AuditOptions options, std::shared_ptr<spdlog::logger> log, Words words,
                 AuditFn audit)
    : options_(options), log_(std::move(log)), words_(std::move(words)), audit_(std::move(audit)) {
  if (options_.interval.count() == 0) return;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sdiff-audit");
    while (!stop_.WaitFor(options_.interval)) {
      AuditResult ignored;
      Run(&ignored);  // logs and counts its outcome
    }
  });
}

Auditor::~Auditor() {
  Cancel();
  if (thread_.joinable()) thread_.join();
  net::MutexLock wait_for_a_run(&run_mu_);  // one started by another thread
}

void Auditor::Cancel() {
  stopping_ = true;
  stop_.Stop();
}

Status Auditor::Run(AuditResult* result) {
  net::MutexLock one_at_a_time(&run_mu_);
  *result = AuditResult();
  if (stopping_) return Status::Aborted("the self-audit is stopping (shutting down)");
  TreeScanOptions scan;
  scan.max_bytes_per_second = options_.max_bytes_per_second;
  scan.cancel = &stopping_;
  auto start = std::chrono::steady_clock::now();
  Status s = audit_(scan, result);
  result->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  {
    net::MutexLock lock(&mu_);
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    stats_.last_failed = !s.ok();
    if (!s.ok()) {
      ++stats_.failures;
      stats_.last_failure_unix_ms = now_ms;
    } else {
      ++stats_.runs;
      stats_.last_keys = result->keys;
      stats_.mismatches += result->mismatches;
      stats_.last_mismatches = result->mismatches;
      stats_.last_seconds = result->seconds;
      stats_.last_unix_ms = now_ms;
    }
  }
  if (!s.ok()) {
    log_->warn("self-audit failed: {}", s.ToString());
  } else if (result->mismatches > 0) {
    log_->warn(
        "self-audit: {} keys of {} differed from {} at sequence {} (first: {}); corrected, {}",
        result->mismatches, words_.tree, words_.data, result->seq,
        fmt::join(result->examples, ", "), words_.after);
  } else {
    log_->info("self-audit: {} equals {} at sequence {} ({} keys, {:.3f} s)", words_.tree,
               words_.data, result->seq, result->keys, result->seconds);
  }
  return s;
}

AuditStats Auditor::stats() const {
  net::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace sdiff::plugin
