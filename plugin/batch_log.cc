// BatchLog: the tree, the resume window and the fan-out to sessions (see batch_log.h).
#include "plugin/batch_log.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "plugin/tree_prefetch.h"

namespace sdiff::plugin {
namespace {

// The most batches Append queues before it hands them to the sinks; the
// writer's Flush hands over what it has at the end of each pass anyway.
constexpr size_t kHandOffBatches = 64;

// Applies a batch's ops to *tree, in order; `collided` hears of each put
// that left a key out of the tree (a key-hash collision), with the tree's new
// count of such keys. A range delete covers the keys in [key, value)
// bytewise, as RocksDB does with the bytewise comparator, the only one
// Master::Attach accepts; the tree walks every key for it.
Status ApplyToTree(const std::vector<Op>& ops, MerkleTree* tree,
                   const std::function<void(const Op&, size_t left_out)>& collided) {
  for (size_t i = 0; i < ops.size(); ++i) {
    PrefetchGroupAt(*tree, ops, i, [](const Op& op) {
      return op.kind == OpKind::kDeleteRange
                 ? std::nullopt
                 : std::optional(std::pair<FamilyTag, std::string_view>(op.family, op.key));
    });
    const Op& op = ops[i];
    switch (op.kind) {
      case OpKind::kPut: {
        size_t left_out = tree->left_out();
        Status s = tree->Put(op.family, op.key, op.value);
        if (!s.ok()) return s;
        if (tree->left_out() > left_out) collided(op, tree->left_out());
        break;
      }
      case OpKind::kDelete:
        tree->Erase(op.family, op.key);
        break;
      case OpKind::kDeleteRange:
        tree->EraseRange(op.family, op.key, op.value);
        break;
    }
  }
  return Status::OK();
}

}  // namespace

BatchLog::BatchLog(BatchLogOptions options)
    : options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      tree_(options_.key_hasher) {}

void BatchLog::set_writer_wake(std::function<void()> wake) {
  net::MutexLock lock(&mu_);
  writer_wake_ = std::move(wake);
}

void BatchLog::Reset(MerkleTree tree, uint64_t seq) {
  net::MutexLock lock(&mu_);
  tree_ = std::move(tree);
  tailed_seq_ = seq;
  window_.clear();
  window_bytes_ = 0;
  FlushLocked();  // snapshots that waited for a position the jump passed
  RunTreeTasksLocked();
}

Status BatchLog::Append(std::shared_ptr<Batch> batch) {
  std::shared_ptr<const std::string> frame = SharedFrame(*batch);
  auto report = [this](const Op& op, size_t left_out) { ReportCollision(op, left_out); };
  const bool ranges = std::any_of(batch->ops.begin(), batch->ops.end(),
                                  [](const Op& op) { return op.kind == OpKind::kDeleteRange; });
  std::optional<MerkleTree> working;
  if (ranges) {
    // A range delete walks the whole tree (it is in hash order, not key
    // order). This thread is the tree's only writer, so it walks and edits a
    // copy (O(1) to take: nodes are shared) without the lock, which every
    // session's ping needs, and swaps the copy in: no session waits for the
    // walk, none sees half a batch.
    {
      net::MutexLock lock(&mu_);
      working.emplace(tree_);
    }
    Status s = ApplyToTree(batch->ops, &*working, report);
    if (!s.ok()) return s;
  }
  net::MutexLock lock(&mu_);
  if (working) {
    tree_ = std::move(*working);
  } else {
    Status s = ApplyToTree(batch->ops, &tree_, report);
    if (!s.ok()) return s;
  }
  tailed_seq_ = LastSeq(*batch);
  KeepLocked(std::move(batch), std::move(frame));
  RunTreeTasksLocked();
  return Status::OK();
}

std::shared_ptr<const std::string> BatchLog::SharedFrame(const Batch& batch) {
  if (options_.bulk_frame_bytes == 0 || !subscribed_.load(std::memory_order_relaxed)) {
    return nullptr;
  }
  return SharedBatchFrame(batch, options_.bulk_frame_bytes);
}

void BatchLog::KeepLocked(std::shared_ptr<const Batch> batch,
                          std::shared_ptr<const std::string> frame) {
  window_bytes_ += BatchBytes(*batch);
  window_.push_back(batch);
  while (window_bytes_ > options_.resume_window_bytes && window_.size() > 1) {
    window_bytes_ -= BatchBytes(*window_.front());
    window_.pop_front();
  }
  if (frame) ++shared_frames_;
  unsent_.push_back(StreamBatch{std::move(batch), std::move(frame)});
  if (unsent_.size() >= kHandOffBatches) FlushLocked();
}

Status BatchLog::AppendApplied(std::shared_ptr<Batch> batch, TreeView tree_after) {
  std::shared_ptr<const std::string> frame = SharedFrame(*batch);
  net::MutexLock lock(&mu_);
  if (batch->seq != tailed_seq_ + 1) {
    return Status::InvalidArgument("relayed batch at sequence " + std::to_string(batch->seq) +
                                   " does not follow " + std::to_string(tailed_seq_));
  }
  tree_ = MerkleTree(tree_after);
  tailed_seq_ = LastSeq(*batch);
  KeepLocked(std::move(batch), std::move(frame));
  RunTreeTasksLocked();
  return Status::OK();
}

void BatchLog::Correct(TreeView tree, uint64_t seq) {
  net::MutexLock lock(&mu_);
  FlushLocked();  // what was appended before goes out before the change
  tree_ = MerkleTree(tree);
  tailed_seq_ = seq;
  MarkCorrectedLocked();
  FlushLocked();  // snapshots that waited for `seq`
  RunTreeTasksLocked();
}

void BatchLog::Flush() {
  net::MutexLock lock(&mu_);
  FlushLocked();
}

void BatchLog::FlushLocked() {
  if (!unsent_.empty()) {
    for (size_t i = 0; i + 1 < sinks_.size(); ++i) sinks_[i]->OnBatches(unsent_);
    if (!sinks_.empty()) sinks_.back()->OnBatches(std::move(unsent_));
    unsent_.clear();
  }
  std::erase_if(waiting_snapshots_, [this](const SnapshotRequest& r) REQUIRES(mu_) {
    if (r.seq > tailed_seq_) return false;
    r.sink->OnSnapshot(tree_.Snapshot(), tailed_seq_);
    return true;
  });
}

void BatchLog::RunTreeTasks() {
  net::MutexLock lock(&mu_);
  RunTreeTasksLocked();
}

void BatchLog::RunTreeTasksLocked() {
  if (tree_tasks_.empty()) return;
  size_t before = tree_tasks_.size();
  std::erase_if(tree_tasks_, [this](const std::shared_ptr<TreeTask>& task) REQUIRES(mu_) {
    if (task->seq > tailed_seq_) return false;
    if (task->seq == tailed_seq_) {
      if (task->fn(&tree_)) MarkCorrectedLocked();
      task->state = TreeTask::State::kDone;
    } else {
      task->state = TreeTask::State::kPassed;
    }
    return true;
  });
  if (tree_tasks_.size() != before) tree_tasks_done_.SignalAll();
}

uint64_t BatchLog::tailed_seq() {
  net::MutexLock lock(&mu_);
  return tailed_seq_;
}

uint64_t BatchLog::key_count() {
  net::MutexLock lock(&mu_);
  return tree_.size();
}

bool BatchLog::CanResume(uint64_t seq) {
  net::MutexLock lock(&mu_);
  if (seq <= corrected_seq_) return false;
  if (seq == tailed_seq_) return true;
  if (window_.empty() || seq > tailed_seq_ || window_.front()->seq > seq + 1) return false;
  // The follower's position must end a batch this master streamed: inside
  // one, it holds a history this master does not (a master that lost an
  // unsynced WAL tail reuses its sequence numbers with other boundaries).
  auto next = std::lower_bound(window_.begin(), window_.end(), seq + 1,
                               [](const auto& batch, uint64_t s) { return batch->seq < s; });
  return next != window_.end() && (*next)->seq == seq + 1;
}

BatchLogStats BatchLog::stats() {
  net::MutexLock lock(&mu_);
  BatchLogStats s;
  s.tailed_seq = tailed_seq_;
  s.keys = tree_.size();
  s.root = tree_.root_hash();
  s.left_out_keys = tree_.left_out();
  s.shared_frames = shared_frames_;
  return s;
}

void BatchLog::Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) {
  net::MutexLock lock(&mu_);
  FlushLocked();  // so the replay below ends where the live stream goes on
  std::vector<StreamBatch> replay;
  for (const auto& batch : window_) {
    if (LastSeq(*batch) >= from_seq) replay.push_back(StreamBatch{batch, nullptr});
  }
  if (!replay.empty()) sink->OnBatches(std::move(replay));
  sinks_.push_back(std::move(sink));
  subscribed_.store(true, std::memory_order_relaxed);
}

void BatchLog::RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) {
  net::MutexLock lock(&mu_);
  FlushLocked();  // the snapshot holds them: the sink must have had them
  if (seq > tailed_seq_) {
    // The session's stream began beyond the tree (a bootstrap or a copy read
    // the database at its newest sequence): a snapshot now would lack what
    // the follower already has, and the diff would delete it.
    waiting_snapshots_.push_back({sink, seq});
    return;
  }
  sink->OnSnapshot(tree_.Snapshot(), tailed_seq_);
}

void BatchLog::Unsubscribe(const BatchSink* sink) {
  net::MutexLock lock(&mu_);
  std::erase_if(sinks_, [sink](const auto& s) { return s.get() == sink; });
  subscribed_.store(!sinks_.empty(), std::memory_order_relaxed);
  std::erase_if(waiting_snapshots_, [sink](const auto& r) { return r.sink.get() == sink; });
}

bool BatchLog::RunAtSequence(uint64_t seq, std::chrono::milliseconds timeout,
                             std::function<bool(MerkleTree*)> fn) {
  auto task = std::make_shared<TreeTask>();
  task->seq = seq;
  task->fn = std::move(fn);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::function<void()> wake;
  {
    net::MutexLock lock(&mu_);
    tree_tasks_.push_back(task);
    wake = writer_wake_;
  }
  if (wake) wake();  // outside mu_: the writer's own lock is never taken under it
  net::MutexLock lock(&mu_);
  while (task->state == TreeTask::State::kWaiting) {
    if (!tree_tasks_done_.WaitUntil(deadline) && task->state == TreeTask::State::kWaiting) {
      std::erase(tree_tasks_, task);
      return false;
    }
  }
  return task->state == TreeTask::State::kDone;
}

void BatchLog::MarkCorrectedLocked() {
  corrected_seq_ = tailed_seq_;
  window_.clear();
  window_bytes_ = 0;
}

// Once per key that newly collides (not on each later write of it): the
// stream carries it as any key, the tree keeps the lesser of the two.
void BatchLog::ReportCollision(const Op& op, size_t left_out) {
  log_->warn(
      "the key hash of a key in family {} ({} bytes, key hash {}) collides with another key's: "
      "the greater of the two is left out of the merkle tree on every replica; both still "
      "replicate ({} keys left out)",
      op.family, op.key.size(), options_.key_hasher(op.family, op.key).ToHex(), left_out);
}

}  // namespace sdiff::plugin
