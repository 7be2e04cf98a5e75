// WalTailer: turns a live RocksDB's WAL into Batches. It builds the merkle
// tree from a snapshot at sequence S, then follows the WAL from S+1, reading
// the WAL files itself (WalReader), and appends each committed WriteBatch, as
// an engine Batch, to a BatchLog (plugin/batch_log.h), which applies it to the
// tree and streams it. That is all it does.
//
// Continuity: each batch must start where the previous one ended. A gap (a
// write with disableWAL, an IngestExternalFile, a WAL purged under the
// tailer) is never skipped silently: the tree is rebuilt from a fresh
// snapshot and the log jumps (BatchLog::Reset), which makes every follower
// diff.
//
// Threads: one tailer thread ("sdiff-tailer") is the log's writer; the
// public calls are thread-safe.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/messages.h"
#include "engine/status.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "plugin/batch_log.h"
#include "plugin/progress.h"
#include "plugin/tree_scan.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct WalTailerOptions {
  // The longest the tailer sleeps before looking at the WAL again when no
  // NotifyWrite() woke it: the bound on stream latency without notifications.
  std::chrono::milliseconds poll_interval{1};
  // Once the application has called NotifyWrite(), the tailer trusts it to
  // call it after every write: each look at an idle WAL that found nothing
  // doubles the next sleep, from poll_interval up to this, and a write (or a
  // NotifyWrite) brings it back to poll_interval. An idle master then wakes
  // a few times a second instead of a thousand; a write the application
  // forgot to notify is seen within this. Default: 16 ms.
  std::chrono::milliseconds idle_poll_interval{16};
  // After a pass over the WAL that found several batches (a fast writer),
  // the tailer waits this long before the next, so the batches written
  // meanwhile go to the followers together. Bounds the latency it adds.
  std::chrono::microseconds linger{200};  // Default: 200 us
  ProgressFn progress;                    // tree builds; optional
  std::shared_ptr<spdlog::logger> logger;
};

struct WalTailerStats {
  uint64_t rebuilds = 0;  // trees rebuilt after a gap
  // A rebuild was asked for (RequestRebuild: an ingested file) and has not
  // finished: the tree lacks data the database holds.
  bool rebuild_pending = false;
  uint64_t idle_looks = 0;  // looks at the WAL that found nothing new and slept after
};

// Writes read from a WAL record or a prepare section.
struct WalWrites {
  std::vector<Op> ops;         // in the replicated families
  std::vector<size_t> merges;  // indexes of ops that are merges, resolved at commit
  uint64_t sequences = 0;      // data records in any family: sequence numbers they take
};

// One WAL record, as the tailer reads it.
struct WalRecord : WalWrites {
  uint64_t seq = 0;                                         // its first sequence number
  std::vector<std::pair<std::string, WalWrites>> prepares;  // the sections it prepares, by xid
  std::vector<std::string> ended;                           // the xids it commits or rolls back
  bool unknown_commit = false;  // it commits a section the tailer never read
};

class WalTailer {
 public:
  // `families`: the column families to replicate (the DB's own handles),
  // tagged by their IDs. Builds the tree into `log` before returning;
  // Start() begins tailing. `log` outlives the tailer.
  static Status Create(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                       WalTailerOptions options, BatchLog* log, std::unique_ptr<WalTailer>* out);
  ~WalTailer();  // Stop()s
  WalTailer(const WalTailer&) = delete;
  WalTailer& operator=(const WalTailer&) = delete;

  void Start();
  void Stop();
  // The application wrote: wakes the tailer now, if it sleeps, and from now
  // on lets it sleep longer while idle (idle_poll_interval).
  void NotifyWrite();
  // sdiff's own write (a writer session's): wakes the tailer like
  // NotifyWrite, but says nothing of whether the application notifies.
  void NotifyOwnWrite();
  // Data reached the DB outside the WAL (an ingested file): rebuild and diff.
  void RequestRebuild(std::string reason);
  WalTailerStats stats();
  // The replicated families, tagged as in the tree. Constant.
  TaggedFamilies TaggedFamilyList() const;
  // Called after a gap rebuilt the tree (so the master can ask followers to diff).
  void set_on_rebuild(std::function<void()> fn) { on_rebuild_ = std::move(fn); }

 private:
  WalTailer(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
            WalTailerOptions options, BatchLog* log);
  Status Rebuild();  // tree from a fresh snapshot; the stream continues after it
  void Run();
  void Wake();  // wakes the tailer whether it sleeps or lingers
  // Waits until `timeout` passes, Stop or a rebuild is asked for, or (with
  // `until_woken`) Wake is called.
  void WaitLocked(std::chrono::steady_clock::duration timeout, bool until_woken) REQUIRES(wake_mu_);
  // One WAL record, read: its ops and the sequence numbers it consumes
  // (see OpCollector). `data_wanted`: false when the tree already holds it.
  Status ReadRecord(uint64_t seq, const rocksdb::WriteBatch& wal_batch, bool data_wanted,
                    WalRecord* out);
  // Reads the values of the record's merges, as of now.
  Status ResolveMerges(WalRecord* record);
  // Keeps the record's prepare sections and forgets those it ends.
  void KeepPrepared(WalRecord& record);
  // Appends a record that consumes sequence numbers to the log, as a Batch.
  Status Commit(WalRecord record);

  rocksdb::DB* db_;
  std::map<uint32_t, rocksdb::ColumnFamilyHandle*> families_;  // by column family ID
  WalTailerOptions options_;
  BatchLog* const log_;
  std::shared_ptr<spdlog::logger> logger_;
  std::function<void()> on_rebuild_;
  std::thread thread_;

  net::Mutex wake_mu_;
  net::CondVar wake_{&wake_mu_};
  bool woken_ GUARDED_BY(wake_mu_) = false;
  // Set (under wake_mu_) while the tailer waits for NotifyWrite; read without it.
  std::atomic<bool> sleeping_{false};
  // NotifyWrite was called: the application notifies its writes.
  std::atomic<bool> notified_{false};
  uint64_t idle_looks_ GUARDED_BY(wake_mu_) = 0;
  bool stop_ GUARDED_BY(wake_mu_) = false;
  std::string rebuild_reason_ GUARDED_BY(wake_mu_);    // non-empty: rebuild
  bool rebuild_pending_ GUARDED_BY(wake_mu_) = false;  // asked for, not yet done
  uint64_t rebuilds_ GUARDED_BY(wake_mu_) = 0;
  // Prepared transactions not yet committed or rolled back, by xid. Owned by
  // the tailer thread.
  std::map<std::string, WalWrites> prepared_;
};

}  // namespace sdiff::plugin
