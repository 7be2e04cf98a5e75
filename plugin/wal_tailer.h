// WalTailer: the master's view of a live RocksDB. It builds the merkle tree
// from a snapshot at sequence S, then follows the WAL from S+1, reading the
// WAL files itself (WalReader), and turns each committed WriteBatch into
// an engine Batch, applying it to the tree and handing it to every subscribed
// follower session, in sequence order. It is the net::MasterHub the master
// server reads from.
//
// Continuity: each batch must start where the previous one ended. A gap (a
// write with disableWAL, an IngestExternalFile, a WAL purged under the
// tailer) is never skipped silently: the tree is rebuilt from a fresh
// snapshot and the stream jumps, which makes every follower diff.
//
// Threads: one tailer thread owns the live tree; hub calls come from session
// strands and take the mutex.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/merkle_tree.h"
#include "net/master_server.h"
#include "plugin/disk_reserve.h"
#include "plugin/progress.h"
#include "plugin/tree_scan.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct WalTailerOptions {
  std::string master_id;
  // The longest the tailer sleeps before looking at the WAL again when no
  // NotifyWrite() woke it: the bound on stream latency without notifications.
  std::chrono::milliseconds poll_interval{1};
  // After a pass over the WAL that found several batches (a fast writer),
  // the tailer waits this long before the next, so the batches written
  // meanwhile go to the followers together. Bounds the latency it adds.
  std::chrono::microseconds linger{200};  // Default: 200 us
  // Recent batches kept in memory for followers that resume.
  size_t resume_window_bytes = 64 << 20;  // Default: 64 MiB
  uint64_t bootstrap_min_keys = 10000;
  bool diff_on_connect = true;  // see ServerOptions::diff_on_connect
  ProgressFn progress;          // tree builds; optional
  // Clients in the writer role may write through the master (MasterHooks::write).
  bool allow_writers = false;
  // A writer's batch is synced to the WAL before it is acknowledged.
  bool sync_writes = false;
  // A writer's batch is refused while the database's disk has less than this
  // free (plugin/disk_reserve.h). 0: no check.
  uint64_t min_free_bytes = 0;
  // Testing seam: see DiskReserveOptions::free_bytes.
  std::function<uint64_t(const std::string& path)> free_bytes;
  // Empty followers may copy the database files (MasterHooks::open_files).
  bool serve_files = true;
  // Testing seam: how the tree hashes keys, to force key-hash collisions.
  // Master and followers must agree. Default: KeyHash (docs/protocol.md).
  KeyHasher key_hasher = &KeyHash;
  std::shared_ptr<spdlog::logger> logger;
};

struct WalTailerStats {
  uint64_t tailed_seq = 0;  // last sequence applied to the tree and streamed
  size_t keys = 0;
  Hash128 root;
  uint64_t batches = 0;
  uint64_t rebuilds = 0;  // trees rebuilt after a gap
  // A rebuild was asked for (RequestRebuild: an ingested file) and has not
  // finished: the tree lacks data the database holds.
  bool rebuild_pending = false;
  // Keys whose 128-bit key hash collides with a lesser key's: they stream and
  // replicate, but the tree (here and on every follower) holds the lesser only.
  size_t left_out_keys = 0;
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

class WalTailer : public net::MasterHub {
 public:
  // `families`: the column families to replicate (the DB's own handles).
  // Builds the tree before returning; Start() begins tailing.
  static Status Create(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                       WalTailerOptions options, std::unique_ptr<WalTailer>* out);
  ~WalTailer() override;  // Stop()s

  void Start();
  void Stop();
  void NotifyWrite();  // wakes the tailer now
  // Data reached the DB outside the WAL (an ingested file): rebuild and diff.
  void RequestRebuild(std::string reason);
  WalTailerStats stats();
  // The replicated families, tagged as in the tree. Constant.
  TaggedFamilies TaggedFamilyList() const;
  // Runs `fn` on the tailer's thread, under the tree's lock, with the live
  // tree exactly as of `seq`: after the batch that ends there, before the
  // next. Returns false, and `fn` never runs, if the tree jumped past `seq`
  // (a rebuild) or `timeout` passed first. A database snapshot's sequence
  // always ends a batch, so the tree stops there unless it jumps.
  bool RunAtSequence(uint64_t seq, std::chrono::milliseconds timeout,
                     std::function<void(MerkleTree*)> fn);
  // A correction of the tree (the self-audit's) at the current position: a
  // follower at or before it cannot resume, since the stream it had did not
  // carry the change. Call from a RunAtSequence function.
  void MarkCorrectedLocked();  // REQUIRES(mu_)
  // Called after a gap rebuilt the tree (so the master can ask followers to diff).
  void set_on_rebuild(std::function<void()> fn) { on_rebuild_ = std::move(fn); }

  // net::MasterHub
  ServerOptions SessionOptions() override;
  MasterHooks SessionHooks() override;
  void Subscribe(std::shared_ptr<net::BatchSink> sink, uint64_t from_seq) override;
  void RequestSnapshot(const std::shared_ptr<net::BatchSink>& sink, uint64_t seq) override;
  void Unsubscribe(const net::BatchSink* sink) override;

 private:
  // A writer's ops, committed with DB::Write; *seq: the DB's sequence after it.
  Status ApplyWrite(const std::vector<Op>& ops, uint64_t* seq);
  WalTailer(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
            WalTailerOptions options);
  Status Rebuild();  // tree from a fresh snapshot; the stream continues after it
  void Run();
  // One WAL record, read: its ops and the sequence numbers it consumes
  // (see OpCollector). `data_wanted`: false when the tree already holds it.
  Status ReadRecord(uint64_t seq, const rocksdb::WriteBatch& wal_batch, bool data_wanted,
                    WalRecord* out);
  // Reads the values of the record's merges, as of now.
  Status ResolveMerges(WalRecord* record);
  // Keeps the record's prepare sections and forgets those it ends.
  void KeepPrepared(WalRecord& record);
  // Applies a record that consumes sequence numbers to the tree and queues it
  // for the followers.
  Status Commit(WalRecord record);
  // Logs a key that newly collides with another's key hash; `left_out`: the
  // keys the tree now leaves out.
  void ReportCollision(const Op& op, size_t left_out);
  // Hands the queued batches to every sink, as one group, then the snapshots
  // that waited for the tree to reach them.
  void FlushToSinks();
  void FlushToSinksLocked();  // REQUIRES(mu_)
  // Runs the RunAtSequence functions that the tree has reached (or passed).
  void RunTreeTasksLocked();  // REQUIRES(mu_)

  rocksdb::DB* db_;
  std::map<uint32_t, rocksdb::ColumnFamilyHandle*> families_;  // by column family ID
  WalTailerOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::function<void()> on_rebuild_;
  std::thread thread_;
  DiskReserve reserve_;  // checked before each writer's batch

  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool woken_ = false;  // GUARDED_BY(wake_mu_)
  // Set (under wake_mu_) while the tailer waits for NotifyWrite; read without it.
  std::atomic<bool> sleeping_{false};
  bool stop_ = false;             // GUARDED_BY(wake_mu_)
  std::string rebuild_reason_;    // GUARDED_BY(wake_mu_); non-empty: rebuild
  bool rebuild_pending_ = false;  // GUARDED_BY(wake_mu_); asked for, not yet done

  std::mutex mu_;
  MerkleTree tree_;                                     // GUARDED_BY(mu_)
  uint64_t tailed_seq_ = 0;                             // GUARDED_BY(mu_)
  std::deque<std::shared_ptr<const Batch>> window_;     // GUARDED_BY(mu_)
  size_t window_bytes_ = 0;                             // GUARDED_BY(mu_)
  std::vector<std::shared_ptr<net::BatchSink>> sinks_;  // GUARDED_BY(mu_)
  // Committed (in the tree and window_), not yet handed to the sinks. The
  // tailer hands them over once per pass over the WAL, or sooner when many
  // gather, and before anything a sink sees later: a subscription's replay,
  // a snapshot, a rebuild.
  std::vector<std::shared_ptr<const Batch>> unsent_;  // GUARDED_BY(mu_)
  // Snapshots asked for beyond tailed_seq_, given once the tree gets there.
  struct SnapshotRequest {
    std::shared_ptr<net::BatchSink> sink;
    uint64_t seq;
  };
  std::vector<SnapshotRequest> waiting_snapshots_;  // GUARDED_BY(mu_)
  struct TreeTask {
    enum class State { kWaiting, kDone, kPassed };
    uint64_t seq = 0;
    std::function<void(MerkleTree*)> fn;
    State state = State::kWaiting;  // GUARDED_BY(mu_)
  };
  std::vector<std::shared_ptr<TreeTask>> tree_tasks_;  // GUARDED_BY(mu_)
  std::condition_variable tree_tasks_done_;            // with mu_
  // Followers at or before this position cannot resume (MarkCorrectedLocked).
  uint64_t corrected_seq_ = 0;  // GUARDED_BY(mu_)
  WalTailerStats stats_;        // GUARDED_BY(mu_)
  // Prepared transactions not yet committed or rolled back, by xid. Owned by
  // the tailer thread.
  std::map<std::string, WalWrites> prepared_;
};

}  // namespace sdiff::plugin
