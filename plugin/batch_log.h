// BatchLog: the master's committed batches, in sequence order, and the tree
// they build. One writer (the WAL tailer) appends each batch; the log applies
// it to the merkle tree, keeps the recent ones for followers that resume (the
// resume window), hands them to every subscribed session, answers tree
// snapshots once the tree has reached them, and runs functions that need the
// tree at an exact position (the self-audit's).
//
// It knows nothing of RocksDB or of the WAL: the tailer turns the WAL into
// Batches, and rocks_master_hooks.h serves the sessions' database reads.
//
// A relay (plugin/relay.h: a follower that serves followers) has no WAL to
// tail and a tree already: its follower's store keeps one. It hands the log
// each write its follower applied with the store's tree after it
// (AppendApplied), and what changed the tree outside the stream (Correct),
// so the log holds no second tree.
//
// Threads: writer-thread calls (Reset, Append, AppendApplied, Correct, Flush,
// RunTreeTasks) come from one thread, the tree's only writer; the rest may
// come from any thread. All take mu_. Sinks are called under mu_, so a sink
// must not call back into the log.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "engine/hash.h"
#include "engine/master_hub.h"
#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct BatchLogOptions {
  // Recent batches kept in memory for followers that resume. Default: 64 MiB.
  size_t resume_window_bytes = 64 << 20;
  // How the tree hashes keys. Master and followers must agree. Testing seam
  // (forces key-hash collisions). Default: KeyHash (docs/protocol.md).
  KeyHasher key_hasher = &KeyHash;
  std::shared_ptr<spdlog::logger> logger;  // default: spdlog's default logger
  // The sessions' ServerOptions::bulk_frame_bytes: while anyone is
  // subscribed, each batch that goes whole within it is encoded here once, on
  // the writer's thread, and its frame handed with it to every session
  // (SharedBatchFrame). 0: never; each session encodes. Default: 1 MiB.
  size_t bulk_frame_bytes = 1 << 20;
};

struct BatchLogStats {
  uint64_t tailed_seq = 0;  // last sequence applied to the tree and streamed
  size_t keys = 0;
  Hash128 root;
  // Keys whose 128-bit key hash collides with a lesser key's: they stream and
  // replicate, but the tree (here and on every follower) holds the lesser only.
  size_t left_out_keys = 0;
  // Batches encoded once for all the sessions (their frames shared).
  uint64_t shared_frames = 0;
};

class BatchLog {
 public:
  explicit BatchLog(BatchLogOptions options);
  BatchLog(const BatchLog&) = delete;
  BatchLog& operator=(const BatchLog&) = delete;

  const KeyHasher& key_hasher() const { return options_.key_hasher; }

  // Called to wake the writer when a RunAtSequence function waits: an idle
  // writer then runs it at once (RunTreeTasks). The writer sets it before it
  // starts and clears it once stopped.
  void set_writer_wake(std::function<void()> wake);

  // --- The writer's calls.
  // The tree jumps to `tree`, built from the database at `seq` (at start, or
  // after a gap in the WAL). The window empties: nobody resumes across a jump.
  // What was appended before must have been flushed.
  void Reset(MerkleTree tree, uint64_t seq);
  // Applies the batch that follows tailed_seq() to the tree, keeps it in the
  // window and queues it for the sinks (handed over by Flush, or sooner when
  // many gather). Fails only if the tree refuses an op.
  Status Append(std::shared_ptr<Batch> batch);
  // A relay's: `batch`, which follows tailed_seq() (InvalidArgument if it
  // does not: a jump is a Correct), was applied elsewhere, and `tree_after`
  // is the tree with it, which the log takes as its own (O(1), shared, never
  // written here). Kept in the window and queued for the sinks like Append's.
  Status AppendApplied(std::shared_ptr<Batch> batch, TreeView tree_after);
  // A relay's: the data changed outside the stream (a repair, a bootstrap's
  // chunk) or the stream's position jumped (a diff's start); the tree is
  // `tree` at `seq` from now on. As after the self-audit's correction, nobody
  // resumes at or before `seq` (the stream they had did not carry the
  // change). Snapshots waiting for `seq` are given.
  void Correct(TreeView tree, uint64_t seq);
  // Hands the queued batches to every sink as one group, then the snapshots
  // that waited for the tree to reach them.
  void Flush();
  // Runs the RunAtSequence functions that the tree has reached (or passed).
  void RunTreeTasks();

  // --- Any thread.
  uint64_t tailed_seq();
  uint64_t key_count();
  // A follower at `seq` may resume from the window: `seq` ends a batch this
  // log streamed (or is where the tree is), and no correction came after it.
  bool CanResume(uint64_t seq);
  BatchLogStats stats();

  // Give `sink` every batch in the window from `from_seq` on, then each new one.
  void Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq);
  // sink->OnSnapshot with the tree at tailed_seq(), after the batches the sink
  // was handed; if `seq` is beyond the tree, once the tree gets there.
  void RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq);
  void Unsubscribe(const BatchSink* sink);

  // Runs `fn` on the writer's thread, under the log's lock, with the live
  // tree exactly as of `seq`: after the batch that ends there, before the
  // next. Returns false, and `fn` never runs, if the tree jumped past `seq`
  // (a Reset) or `timeout` passed first. A database snapshot's sequence
  // always ends a batch, so the tree stops there unless it jumps. Running on
  // the writer's thread matters: Append edits a copy of the tree outside the
  // lock for a range delete, and a change made meanwhile would be lost.
  // `fn` returns true if it changed the tree (the self-audit's correction):
  // a follower at or before this position then cannot resume, since the
  // stream it had did not carry the change.
  bool RunAtSequence(uint64_t seq, std::chrono::milliseconds timeout,
                     std::function<bool(MerkleTree*)> fn);

 private:
  // After a correction at tailed_seq_: nobody resumes at or before it.
  void MarkCorrectedLocked() REQUIRES(mu_);
  // The frame every sink is handed with `batch`, encoded once here (outside
  // mu_), or null when nobody listens or the batch goes in pieces.
  std::shared_ptr<const std::string> SharedFrame(const Batch& batch);
  // Keeps `batch` (at tailed_seq_ now) in the window and queues it, with its
  // shared frame, for the sinks.
  void KeepLocked(std::shared_ptr<const Batch> batch, std::shared_ptr<const std::string> frame)
      REQUIRES(mu_);
  void FlushLocked() REQUIRES(mu_);
  void RunTreeTasksLocked() REQUIRES(mu_);
  // Logs a key that newly collides with another's key hash; `left_out`: the
  // keys the tree now leaves out.
  void ReportCollision(const Op& op, size_t left_out);

  const BatchLogOptions options_;
  std::shared_ptr<spdlog::logger> log_;

  net::Mutex mu_;
  std::function<void()> writer_wake_ GUARDED_BY(mu_);
  MerkleTree tree_ GUARDED_BY(mu_);
  uint64_t tailed_seq_ GUARDED_BY(mu_) = 0;
  std::deque<std::shared_ptr<const Batch>> window_ GUARDED_BY(mu_);
  size_t window_bytes_ GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<BatchSink>> sinks_ GUARDED_BY(mu_);
  // Whether sinks_ is not empty, read by the writer outside mu_ to skip
  // encoding for nobody. A sink that subscribes meanwhile gets a batch or
  // two without a frame, and encodes them itself.
  std::atomic<bool> subscribed_{false};
  uint64_t shared_frames_ GUARDED_BY(mu_) = 0;  // BatchLogStats::shared_frames
  // Appended (in the tree and window_), not yet handed to the sinks. They
  // go once per pass over the WAL (Flush), or sooner when many gather, and
  // before anything a sink sees later: a subscription's replay, a snapshot,
  // a jump. Only these carry a shared frame: the window keeps the batches
  // alone (replays are encoded by their session), so its memory does not
  // double, and a frame lives only until every session has sent it.
  std::vector<StreamBatch> unsent_ GUARDED_BY(mu_);
  // Snapshots asked for beyond tailed_seq_, given once the tree gets there.
  struct SnapshotRequest {
    std::shared_ptr<BatchSink> sink;
    uint64_t seq;
  };
  std::vector<SnapshotRequest> waiting_snapshots_ GUARDED_BY(mu_);
  struct TreeTask {
    enum class State { kWaiting, kDone, kPassed };
    uint64_t seq = 0;
    std::function<bool(MerkleTree*)> fn;
    State state = State::kWaiting;  // under the log's mu_
  };
  std::vector<std::shared_ptr<TreeTask>> tree_tasks_ GUARDED_BY(mu_);
  net::CondVar tree_tasks_done_{&mu_};
  // Followers at or before this position cannot resume (MarkCorrectedLocked).
  uint64_t corrected_seq_ GUARDED_BY(mu_) = 0;
};

}  // namespace sdiff::plugin
