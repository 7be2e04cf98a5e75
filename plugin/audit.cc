// The self-audit's comparison and its schedule.
#include "plugin/audit.h"

#include <pthread.h>
#include <rocksdb/db.h>

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

void RecordAudit(const Status& status, const AuditResult& result, AuditStats* stats) {
  if (!status.ok()) {
    ++stats->failures;
    return;
  }
  ++stats->runs;
  stats->mismatches += result.mismatches;
  stats->last_mismatches = result.mismatches;
  stats->last_seconds = result.seconds;
  stats->last_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
}

PeriodicAudit::PeriodicAudit(std::chrono::milliseconds interval, std::function<void()> audit) {
  thread_ = std::thread([this, interval, audit = std::move(audit)] {
    pthread_setname_np(pthread_self(), "sdiff-audit");
    std::unique_lock lock(mu_);
    while (!wake_.wait_for(lock, interval, [this] { return stop_; })) {
      lock.unlock();
      audit();
      lock.lock();
    }
  });
}

PeriodicAudit::~PeriodicAudit() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

}  // namespace sdiff::plugin
