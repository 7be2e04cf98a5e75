// Tree building, WAL tailing and the session hooks of the RocksDB master.
#include "plugin/wal_tailer.h"

#include <pthread.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "net/secure_random.h"
#include "plugin/db_files.h"
#include "plugin/tree_scan.h"
#include "plugin/wal_reader.h"
#include "plugin/write_batch_op.h"

namespace sdiff::plugin {
namespace {

constexpr char kReservedFamily[] = "__sdiff";
// Batches one pass must find before the tailer lingers (see Run).
constexpr size_t kLingerBatches = 4;
// The most batches Commit queues before it hands them to the sinks; a pass
// over the WAL hands over what it has at its end anyway.
constexpr size_t kHandOffBatches = 64;
// A WriteBatch's rep starts with its sequence (8 bytes) and count (4).
constexpr size_t kBatchHeaderSize = 12;

// Turns the records of one WAL record (a write group RocksDB merged into one
// batch) into ops, and counts the sequence numbers the record consumes the
// way RocksDB's memtable inserter does: one per data record outside a prepare
// section, replicated family or not. WriteBatch::Count() is not that number:
// it includes a prepare section's records (which take sequence numbers only at
// the commit), and it is 0 for an empty batch or one holding only PutLogData,
// which RocksDB gives the next sequence number without consuming it.
//
// Two-phase commits (a TransactionDB, WRITE_COMMITTED): Prepare() writes the
// transaction's records between BeginPrepare and EndPrepare(xid) markers,
// consuming no sequence number. Commit() writes a Commit(xid) marker after
// the commit-time batch, and RocksDB then inserts the prepared records right
// after it, with the next sequence numbers; the WAL does not repeat them. So
// the collector keeps each prepare section, and a commit splices the
// prepared records in at its marker.
class OpCollector : public rocksdb::WriteBatch::Handler {
 public:
  // `prepared`: sections prepared by earlier records, not yet ended.
  // `data_wanted`: false for a record the tree already holds, read only for
  // its prepare sections and commit markers.
  OpCollector(const std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& families,
              const std::map<std::string, WalWrites>& prepared, bool data_wanted)
      : families_(families), prepared_(prepared), data_wanted_(data_wanted) {}

  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    return Add(OpKind::kPut, cf, key, value, false);
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    return Add(OpKind::kDelete, cf, key, {}, false);
  }
  rocksdb::Status SingleDeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    return Add(OpKind::kDelete, cf, key, {}, false);
  }
  rocksdb::Status DeleteRangeCF(uint32_t cf, const rocksdb::Slice& begin,
                                const rocksdb::Slice& end) override {
    return Add(OpKind::kDeleteRange, cf, begin, end, false);
  }
  rocksdb::Status MergeCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
    // The WAL holds the operand; the replica gets the value resolved at commit.
    return Add(OpKind::kPut, cf, key, {}, true);
  }
  rocksdb::Status PutEntityCF(uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
    return rocksdb::Status::NotSupported("wide-column entities are not replicated");
  }
  rocksdb::Status PutBlobIndexCF(uint32_t, const rocksdb::Slice&, const rocksdb::Slice&) override {
    return rocksdb::Status::NotSupported("blob indexes are not replicated");
  }
  void LogData(const rocksdb::Slice&) override {}  // application blobs: no sequence, no data
  rocksdb::Status MarkBeginPrepare(bool unprepared) override {
    if (unprepared) {
      return rocksdb::Status::NotSupported("write-unprepared transactions are not replicated");
    }
    in_prepare_ = true;
    section_ = WalWrites();
    return rocksdb::Status::OK();
  }
  rocksdb::Status MarkEndPrepare(const rocksdb::Slice& xid) override {
    in_prepare_ = false;
    record_.prepares.emplace_back(xid.ToString(), std::move(section_));
    section_ = WalWrites();
    return rocksdb::Status::OK();
  }
  rocksdb::Status MarkCommit(const rocksdb::Slice& xid) override { return Commit(xid); }
  rocksdb::Status MarkCommitWithTimestamp(const rocksdb::Slice& xid,
                                          const rocksdb::Slice&) override {
    return Commit(xid);
  }
  rocksdb::Status MarkRollback(const rocksdb::Slice& xid) override {
    record_.ended.push_back(xid.ToString());
    return rocksdb::Status::OK();
  }
  rocksdb::Status MarkNoop(bool) override { return rocksdb::Status::OK(); }

  // The record read: ops, merges, sequences, prepares, ended and unknown_commit.
  WalRecord& record() { return record_; }

 private:
  rocksdb::Status Add(OpKind kind, uint32_t cf, const rocksdb::Slice& key,
                      const rocksdb::Slice& value, bool merge) {
    WalWrites& into = in_prepare_ ? section_ : record_;
    ++into.sequences;
    if (!families_.count(cf)) return rocksdb::Status::OK();  // not replicated
    if (!in_prepare_ && !data_wanted_) return rocksdb::Status::OK();
    if (merge) into.merges.push_back(into.ops.size());
    into.ops.push_back(Op{kind, static_cast<FamilyTag>(cf), key.ToString(), value.ToString()});
    return rocksdb::Status::OK();
  }

  rocksdb::Status Commit(const rocksdb::Slice& xid_slice) {
    std::string xid = xid_slice.ToString();
    const WalWrites* section = nullptr;
    for (const auto& [name, writes] : record_.prepares) {
      if (name == xid) section = &writes;  // prepared and committed in one record
    }
    if (section == nullptr) {
      auto found = prepared_.find(xid);
      if (found != prepared_.end()) section = &found->second;
    }
    if (section == nullptr) {
      record_.unknown_commit = true;  // prepared before the WAL the tailer read
    } else {
      record_.sequences += section->sequences;
      if (data_wanted_) {
        for (size_t i : section->merges) record_.merges.push_back(record_.ops.size() + i);
        record_.ops.insert(record_.ops.end(), section->ops.begin(), section->ops.end());
      }
    }
    record_.ended.push_back(std::move(xid));
    return rocksdb::Status::OK();
  }

  const std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& families_;
  const std::map<std::string, WalWrites>& prepared_;
  const bool data_wanted_;
  WalRecord record_;
  WalWrites section_;  // the prepare section being read
  bool in_prepare_ = false;
};

uint64_t DecodeFixed64(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | u[i];
  return v;
}

// Applies a batch's ops to *tree, in order; `collided` hears of each put
// that left a key out of the tree (a key-hash collision), with the tree's new
// count of such keys. A range delete covers the keys in [key, value)
// bytewise, as RocksDB does with the bytewise comparator, the only one
// Master::Attach accepts; the tree walks every key for it.
Status ApplyToTree(const std::vector<Op>& ops, MerkleTree* tree,
                   const std::function<void(const Op&, size_t left_out)>& collided) {
  for (const Op& op : ops) {
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

// A bootstrap scan over a snapshot, family by family (ascending tag), key by key.
struct BootstrapCursor {
  rocksdb::DB* db = nullptr;
  const rocksdb::Snapshot* snapshot = nullptr;
  TaggedFamilies families;
  size_t family = 0;
  std::unique_ptr<rocksdb::Iterator> it;

  ~BootstrapCursor() { Close(); }
  void Close() {
    it.reset();
    if (snapshot != nullptr) db->ReleaseSnapshot(snapshot);
    snapshot = nullptr;
  }
  void OpenFamily() {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    ro.fill_cache = false;
    it.reset(db->NewIterator(ro, families[family].second));
  }
};

}  // namespace

WalTailer::WalTailer(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                     WalTailerOptions options)
    : db_(db),
      options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      reserve_(DiskReserveOptions{db->GetName(), options_.min_free_bytes, "the master",
                                  "refuses writes through it", options_.free_bytes, log_}) {
  for (auto* h : families) families_[h->GetID()] = h;
}

Status WalTailer::Create(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                         WalTailerOptions options, std::unique_ptr<WalTailer>* out) {
  if (families.empty()) families.push_back(db->DefaultColumnFamily());
  for (auto* h : families) {
    if (h->GetName() == kReservedFamily) {
      return Status::InvalidArgument("column family '__sdiff' is reserved for sdiff's own state");
    }
    if (h->GetID() > 0xFFFF) {
      return Status::InvalidArgument("column family '" + h->GetName() + "' has ID " +
                                     std::to_string(h->GetID()) + "; at most 65535 are supported");
    }
  }
  std::unique_ptr<WalTailer> tailer(new WalTailer(db, std::move(families), std::move(options)));
  Status s = tailer->Rebuild();
  if (!s.ok()) return s;
  *out = std::move(tailer);
  return Status::OK();
}

WalTailer::~WalTailer() { Stop(); }

TaggedFamilies WalTailer::TaggedFamilyList() const {
  TaggedFamilies out;
  for (const auto& [id, handle] : families_) out.emplace_back(static_cast<FamilyTag>(id), handle);
  return out;
}

Status WalTailer::Rebuild() {
  FlushToSinks();  // what was tailed before the jump goes out before it, even if this fails
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  uint64_t seq = snapshot->GetSequenceNumber();
  MerkleTree tree(options_.key_hasher);
  TreeScanOptions scan;
  scan.progress = [this](const Progress& p) {
    if (p.done > 0 && p.done % 1'000'000 < (1 << 16) && !p.finished) {
      log_->info("building the tree: {} keys", p.done);
    }
    if (options_.progress) options_.progress(p);
  };
  Status result = ScanIntoTree(db_, snapshot, TaggedFamilyList(), scan, &tree);
  db_->ReleaseSnapshot(snapshot);
  if (!result.ok()) return result;
  log_->info("tree of {} keys built at sequence {}, root {}", tree.size(), seq,
             tree.root_hash().ToHex());
  if (tree.left_out() > 0) {
    log_->warn("{} keys left out of the tree: their key hashes collide with other keys'",
               tree.left_out());
  }
  std::lock_guard lock(mu_);
  tree_ = std::move(tree);
  tailed_seq_ = seq;
  window_.clear();
  window_bytes_ = 0;
  stats_.tailed_seq = seq;
  FlushToSinksLocked();  // snapshots that waited for a position the jump passed
  RunTreeTasksLocked();
  return Status::OK();
}

void WalTailer::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sdiff-tailer");  // as top -H and perf show it
    Run();
  });
}

void WalTailer::Stop() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WalTailer::RequestRebuild(std::string reason) {
  {
    std::lock_guard lock(wake_mu_);
    rebuild_reason_ = std::move(reason);
    rebuild_pending_ = true;
  }
  wake_.notify_one();
}

// Called after every write of a busy application: while the tailer is awake
// it costs a fence and a load, not a lock and a futex call.
void WalTailer::NotifyWrite() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!sleeping_.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(wake_mu_);
    woken_ = true;
  }
  wake_.notify_one();
}

void WalTailer::Run() {
  // Only a database that allows two-phase commits can hold prepare sections,
  // and a section may sit in any live WAL file: read them all from the oldest.
  const bool two_phase = db_->GetDBOptions().allow_2pc;
  std::unique_ptr<WalReader> reader;  // null: Seek to `expected` first
  // A record read whose sequence numbers the database has not published yet
  // (RocksDB writes the WAL first): it waits until `held_until` is published.
  std::unique_ptr<rocksdb::WriteBatch> held;
  uint64_t held_until = 0;
  uint64_t expected;
  {
    std::lock_guard lock(mu_);
    expected = tailed_seq_ + 1;
  }
  auto gap = [&](const std::string& why) {
    log_->warn("WAL gap at sequence {}: {}; rebuilding the tree, followers will diff", expected,
               why);
    reader.reset();
    held.reset();
    Status s = Rebuild();
    if (!s.ok()) log_->error("rebuilding the tree failed: {}", s.ToString());
    {
      std::lock_guard lock(mu_);
      ++stats_.rebuilds;
      expected = tailed_seq_ + 1;
    }
    if (on_rebuild_) on_rebuild_();
  };
  for (;;) {
    std::string rebuild_reason;
    {
      std::unique_lock lock(wake_mu_);
      if (stop_) return;
      rebuild_reason = std::exchange(rebuild_reason_, {});
    }
    if (!rebuild_reason.empty()) {
      gap(rebuild_reason);
      std::lock_guard lock(wake_mu_);
      rebuild_pending_ = !rebuild_reason_.empty();  // asked again meanwhile
    }
    bool progressed = false;
    size_t batches = 0;
    // RocksDB writes a batch's WAL record, flushed to the file, before it
    // publishes the batch's sequence numbers: every logged write up to `seen`
    // is readable now.
    const uint64_t seen = db_->GetLatestSequenceNumber();
    if (!reader) {
      reader = std::make_unique<WalReader>(db_, log_);
      prepared_.clear();  // read again from the files
      Status s = reader->Seek(expected, two_phase);
      if (!s.ok()) {
        gap("cannot read the WAL: " + s.ToString());
        continue;
      }
    }
    bool at_end = false;
    while (!held || seen >= held_until) {
      if (!held) {
        std::string rep;
        Status error;
        WalReader::Result r = reader->Next(seen >= expected, &rep, &error);
        if (r == WalReader::Result::kEnd) {
          at_end = true;
          break;
        }
        if (r == WalReader::Result::kError) {
          gap(error.message());
          break;
        }
        if (rep.size() < kBatchHeaderSize) {
          gap("a WAL record of " + std::to_string(rep.size()) + " bytes");
          break;
        }
        held = std::make_unique<rocksdb::WriteBatch>(std::move(rep));
        held_until = 0;
      }
      const uint64_t seq = DecodeFixed64(held->Data().data());
      WalRecord record;
      Status s = ReadRecord(seq, *held, seq >= expected, &record);
      if (!s.ok()) {
        log_->error("WAL record at sequence {}: {}", seq, s.ToString());
        gap(s.ToString());
        break;
      }
      // Before `expected` (the tree has it) or consuming no sequence number
      // (an empty batch, PutLogData alone, a prepare section): nothing in it
      // is data the tree lacks. A logged write missing before it shows at
      // the next record that consumes one.
      if (record.sequences == 0 || seq + record.sequences <= expected) {
        KeepPrepared(record);
        held.reset();
        continue;
      }
      if (seq != expected) {
        gap(seq < expected ? "the WAL record at sequence " + std::to_string(seq) + " spans it"
                           : "the next WAL record starts at " + std::to_string(seq));
        break;
      }
      if (record.unknown_commit) {
        gap("a two-phase commit at sequence " + std::to_string(seq) +
            " of a transaction prepared before the WAL files the tailer read");
        break;
      }
      const uint64_t next = seq + record.sequences;
      if (db_->GetLatestSequenceNumber() < next - 1) {
        held_until = next - 1;  // written, not yet published: the next pass
        break;
      }
      s = ResolveMerges(&record);
      if (!s.ok()) {
        gap(s.ToString());
        break;
      }
      KeepPrepared(record);
      held.reset();
      s = Commit(std::move(record));
      if (!s.ok()) {
        log_->error("batch at sequence {}: {}", seq, s.ToString());
        gap(s.ToString());
        break;
      }
      expected = next;
      progressed = true;
      ++batches;
    }
    if (progressed) FlushToSinks();
    if (at_end && seen >= expected) {
      // Every logged write up to `seen` is in the files read, and none holds
      // `expected`: the write that took it had disableWAL, or was an
      // ingested file given a sequence number. Waiting for a later write
      // would leave the tree and every follower without it until then.
      gap("the WAL holds nothing from there, though the database is at sequence " +
          std::to_string(seen));
      continue;
    }
    {
      std::lock_guard tree_lock(mu_);
      RunTreeTasksLocked();  // those asked for the position the tree rests at
    }
    std::unique_lock lock(wake_mu_);
    auto stop_or_rebuild = [this] { return stop_ || !rebuild_reason_.empty(); };
    if (progressed) {
      // Several batches in one pass: the writer is fast. Let its next ones
      // gather for a moment, unwoken by NotifyWrite, so they reach the
      // server and the follower together (one wake-up, send and write for
      // many) instead of one at a time. Two or three are what a slow writer
      // leaves during one linger: below kLingerBatches the tailer goes back
      // to waking per write, so a slow writer's batches are not delayed.
      if (batches >= kLingerBatches && options_.linger.count() > 0) {
        wake_.wait_for(lock, options_.linger, stop_or_rebuild);
      }
      continue;
    }
    // NotifyWrite signals only while sleeping_ is set; a write it saw us
    // awake for advanced the DB's sequence past `seen` (the fences pair with
    // NotifyWrite's), so look at the WAL again instead of sleeping.
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (db_->GetLatestSequenceNumber() == seen) {
      wake_.wait_for(lock, options_.poll_interval, [&] { return woken_ || stop_or_rebuild(); });
    }
    sleeping_.store(false, std::memory_order_relaxed);
    woken_ = false;
  }
}

Status WalTailer::ReadRecord(uint64_t seq, const rocksdb::WriteBatch& wal_batch, bool data_wanted,
                             WalRecord* out) {
  OpCollector collector(families_, prepared_, data_wanted);
  rocksdb::Status rs = wal_batch.Iterate(&collector);
  if (!rs.ok()) return Status::Corruption("cannot read the WAL batch: " + rs.ToString());
  *out = std::move(collector.record());
  out->seq = seq;
  return Status::OK();
}

Status WalTailer::ResolveMerges(WalRecord* record) {
  for (size_t i : record->merges) {
    // Resolved as of now; later batches replay on top, so the replica converges.
    Op& op = record->ops[i];
    std::string value;
    rocksdb::Status g = db_->Get(rocksdb::ReadOptions(), families_[op.family], op.key, &value);
    if (g.ok()) {
      op.value = std::move(value);
    } else if (g.IsNotFound()) {
      op.kind = OpKind::kDelete;
    } else {
      return Status::IOError("reading merged key: " + g.ToString());
    }
  }
  return Status::OK();
}

void WalTailer::KeepPrepared(WalRecord& record) {
  for (auto& [xid, writes] : record.prepares) prepared_[xid] = std::move(writes);
  for (const std::string& xid : record.ended) prepared_.erase(xid);
}

Status WalTailer::Commit(WalRecord record) {
  auto batch = std::make_shared<Batch>();
  batch->seq = record.seq;
  batch->count = record.sequences;
  batch->ops = std::move(record.ops);

  auto report = [this](const Op& op, size_t left_out) { ReportCollision(op, left_out); };
  std::unique_lock lock(mu_, std::defer_lock);
  const bool ranges = std::any_of(batch->ops.begin(), batch->ops.end(),
                                  [](const Op& op) { return op.kind == OpKind::kDeleteRange; });
  if (ranges) {
    // A range delete walks the whole tree (it is in hash order, not key
    // order). This thread is the tree's only writer, so it walks and edits a
    // copy without the lock, which every session's ping needs, and swaps the
    // copy in: no session waits for the walk, none sees half a batch.
    MerkleTree working = tree_;
    Status s = ApplyToTree(batch->ops, &working, report);
    if (!s.ok()) return s;
    lock.lock();
    tree_ = std::move(working);
  } else {
    lock.lock();
    Status s = ApplyToTree(batch->ops, &tree_, report);
    if (!s.ok()) return s;
  }
  tailed_seq_ = LastSeq(*batch);
  std::shared_ptr<const Batch> shared = batch;
  window_bytes_ += BatchBytes(*batch);
  window_.push_back(shared);
  while (window_bytes_ > options_.resume_window_bytes && window_.size() > 1) {
    window_bytes_ -= BatchBytes(*window_.front());
    window_.pop_front();
  }
  unsent_.push_back(std::move(shared));
  if (unsent_.size() >= kHandOffBatches) FlushToSinksLocked();
  stats_.tailed_seq = tailed_seq_;
  ++stats_.batches;
  RunTreeTasksLocked();
  return Status::OK();
}

void WalTailer::FlushToSinks() {
  std::lock_guard lock(mu_);
  FlushToSinksLocked();
}

void WalTailer::FlushToSinksLocked() {
  if (!unsent_.empty()) {
    for (size_t i = 0; i + 1 < sinks_.size(); ++i) sinks_[i]->OnBatches(unsent_);
    if (!sinks_.empty()) sinks_.back()->OnBatches(std::move(unsent_));
    unsent_.clear();
  }
  std::erase_if(waiting_snapshots_, [this](const SnapshotRequest& r) {
    if (r.seq > tailed_seq_) return false;
    r.sink->OnSnapshot(tree_.Snapshot(), tailed_seq_);
    return true;
  });
}

bool WalTailer::RunAtSequence(uint64_t seq, std::chrono::milliseconds timeout,
                              std::function<void(MerkleTree*)> fn) {
  auto task = std::make_shared<TreeTask>();
  task->seq = seq;
  task->fn = std::move(fn);
  std::unique_lock lock(mu_);
  tree_tasks_.push_back(task);
  lock.unlock();
  {
    std::lock_guard wake_lock(wake_mu_);
    woken_ = true;  // an idle tailer runs it at once
  }
  wake_.notify_one();
  lock.lock();
  if (!tree_tasks_done_.wait_for(lock, timeout,
                                 [&] { return task->state != TreeTask::State::kWaiting; })) {
    std::erase(tree_tasks_, task);
    return false;
  }
  return task->state == TreeTask::State::kDone;
}

void WalTailer::RunTreeTasksLocked() {
  if (tree_tasks_.empty()) return;
  size_t before = tree_tasks_.size();
  std::erase_if(tree_tasks_, [this](const std::shared_ptr<TreeTask>& task) {
    if (task->seq > tailed_seq_) return false;
    if (task->seq == tailed_seq_) {
      task->fn(&tree_);
      task->state = TreeTask::State::kDone;
    } else {
      task->state = TreeTask::State::kPassed;
    }
    return true;
  });
  if (tree_tasks_.size() != before) tree_tasks_done_.notify_all();
}

void WalTailer::MarkCorrectedLocked() {
  corrected_seq_ = tailed_seq_;
  window_.clear();
  window_bytes_ = 0;
}

// Once per key that newly collides (not on each later write of it): the
// stream carries it as any key, the tree keeps the lesser of the two.
void WalTailer::ReportCollision(const Op& op, size_t left_out) {
  log_->warn(
      "the key hash of a key in family {} ({} bytes, key hash {}) collides with another key's: "
      "the greater of the two is left out of the merkle tree on every replica; both still "
      "replicate ({} keys left out)",
      op.family, op.key.size(), options_.key_hasher(op.family, op.key).ToHex(), left_out);
}

WalTailerStats WalTailer::stats() {
  bool rebuild_pending;
  {
    std::lock_guard lock(wake_mu_);
    rebuild_pending = rebuild_pending_;
  }
  std::lock_guard lock(mu_);
  WalTailerStats s = stats_;
  s.rebuild_pending = rebuild_pending;
  s.keys = tree_.size();
  s.left_out_keys = tree_.left_out();
  s.root = tree_.root_hash();
  return s;
}

ServerOptions WalTailer::SessionOptions() {
  ServerOptions o;
  o.master_id = options_.master_id;
  o.bootstrap_min_keys = options_.bootstrap_min_keys;
  o.diff_on_connect = options_.diff_on_connect;
  for (const auto& [id, handle] : families_) {
    o.families.push_back(FamilyInfo{static_cast<FamilyTag>(id), handle->GetName()});
  }
  return o;
}

MasterHooks WalTailer::SessionHooks() {
  MasterHooks h;
  h.current_seq = [this] {
    std::lock_guard lock(mu_);
    return tailed_seq_;
  };
  h.key_count = [this] {
    std::lock_guard lock(mu_);
    return static_cast<uint64_t>(tree_.size());
  };
  h.can_resume = [this](uint64_t seq) {
    std::lock_guard lock(mu_);
    if (seq <= corrected_seq_) return false;
    if (seq == tailed_seq_) return true;
    if (window_.empty() || seq > tailed_seq_ || window_.front()->seq > seq + 1) return false;
    // The follower's position must end a batch this master streamed: inside
    // one, it holds a history this master does not (a master that lost an
    // unsynced WAL tail reuses its sequence numbers with other boundaries).
    auto next = std::lower_bound(window_.begin(), window_.end(), seq + 1,
                                 [](const auto& batch, uint64_t s) { return batch->seq < s; });
    return next != window_.end() && (*next)->seq == seq + 1;
  };
  h.read = [this](const std::vector<KeyRef>& keys,
                  std::vector<std::optional<std::string>>* values) {
    values->clear();
    const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    Status result;
    for (const KeyRef& k : keys) {
      auto family = families_.find(k.family);
      std::string value;
      rocksdb::Status s = family == families_.end() ? rocksdb::Status::NotFound()
                                                    : db_->Get(ro, family->second, k.key, &value);
      if (s.ok()) {
        values->push_back(std::move(value));
      } else if (s.IsNotFound()) {
        values->push_back(std::nullopt);
      } else {
        result = Status::IOError("reading for repair: " + s.ToString());
        break;
      }
    }
    db_->ReleaseSnapshot(snapshot);
    return result;
  };
  if (options_.allow_writers) {
    h.write = [this](const std::vector<Op>& ops, uint64_t* seq) { return ApplyWrite(ops, seq); };
  }
  if (options_.serve_files) {
    h.open_files = [this](std::unique_ptr<FileSource>* out) {
      std::vector<rocksdb::ColumnFamilyHandle*> handles;
      for (const auto& [id, handle] : families_) handles.push_back(handle);
      return OpenDbFiles(db_, handles, out);
    };
  }
  auto cursor = std::make_shared<BootstrapCursor>();
  h.open_bootstrap = [this, cursor](bool resume, FamilyTag family, const std::string& key) {
    cursor->Close();
    cursor->db = db_;
    cursor->snapshot = db_->GetSnapshot();
    cursor->families = TaggedFamilyList();
    cursor->family = 0;
    if (resume) {
      while (cursor->family < cursor->families.size() &&
             cursor->families[cursor->family].first < family) {
        ++cursor->family;
      }
    }
    if (cursor->family < cursor->families.size()) {
      cursor->OpenFamily();
      if (resume && cursor->families[cursor->family].first == family) {
        cursor->it->Seek(key);
        if (cursor->it->Valid() && cursor->it->key() == key) cursor->it->Next();
      } else {
        cursor->it->SeekToFirst();
      }
    }
    return cursor->snapshot->GetSequenceNumber();
  };
  h.scan_bootstrap = [cursor](size_t max_bytes, std::vector<Op>* out) {
    size_t bytes = 0;
    while (cursor->family < cursor->families.size() && bytes < max_bytes) {
      auto& it = cursor->it;
      if (!it->Valid()) {
        if (++cursor->family < cursor->families.size()) {
          cursor->OpenFamily();
          cursor->it->SeekToFirst();
        }
        continue;
      }
      out->push_back(Op{OpKind::kPut, cursor->families[cursor->family].first, it->key().ToString(),
                        it->value().ToString()});
      bytes += it->key().size() + it->value().size() + 8;
      it->Next();
    }
    bool done = cursor->family >= cursor->families.size();
    if (done) cursor->Close();
    return done;
  };
  h.random_bytes = net::SecureRandomBytes;
  return h;
}

void WalTailer::Subscribe(std::shared_ptr<net::BatchSink> sink, uint64_t from_seq) {
  std::lock_guard lock(mu_);
  FlushToSinksLocked();  // so the replay below ends where the live stream goes on
  std::vector<std::shared_ptr<const Batch>> replay;
  for (const auto& batch : window_) {
    if (LastSeq(*batch) >= from_seq) replay.push_back(batch);
  }
  if (!replay.empty()) sink->OnBatches(std::move(replay));
  sinks_.push_back(std::move(sink));
}

void WalTailer::RequestSnapshot(const std::shared_ptr<net::BatchSink>& sink, uint64_t seq) {
  std::lock_guard lock(mu_);
  FlushToSinksLocked();  // the snapshot holds them: the sink must have had them
  if (seq > tailed_seq_) {
    // The session's stream began beyond the tree (a bootstrap or a copy read
    // the database at its newest sequence): a snapshot now would lack what
    // the follower already has, and the diff would delete it.
    waiting_snapshots_.push_back({sink, seq});
    return;
  }
  sink->OnSnapshot(tree_.Snapshot(), tailed_seq_);
}

void WalTailer::Unsubscribe(const net::BatchSink* sink) {
  std::lock_guard lock(mu_);
  std::erase_if(sinks_, [sink](const auto& s) { return s.get() == sink; });
  std::erase_if(waiting_snapshots_, [sink](const auto& r) { return r.sink.get() == sink; });
}

Status WalTailer::ApplyWrite(const std::vector<Op>& ops, uint64_t* seq) {
  rocksdb::WriteBatch batch;
  for (const Op& op : ops) {
    auto family = families_.find(op.family);
    if (family == families_.end()) {
      return Status::InvalidArgument("no replicated column family has tag " +
                                     std::to_string(op.family));
    }
    // RocksDB refuses a range that ends before it starts at DB::Write and
    // then keeps the error, refusing every later write: check it here.
    if (op.kind == OpKind::kDeleteRange &&
        family->second->GetComparator()->Compare(op.key, op.value) > 0) {
      return Status::InvalidArgument("writer's batch: a delete range ends before it starts");
    }
    rocksdb::Status s = AddOp(op, family->second, &batch);
    if (!s.ok()) return Status::InvalidArgument("writer's batch: " + s.ToString());
  }
  Status room = reserve_.Check(batch.GetDataSize());
  if (!room.ok()) return room;
  rocksdb::WriteOptions write;
  write.sync = options_.sync_writes;
  rocksdb::Status s = db_->Write(write, &batch);
  if (!s.ok()) return Status::IOError("writing to the master's database: " + s.ToString());
  *seq = db_->GetLatestSequenceNumber();
  NotifyWrite();
  return Status::OK();
}

}  // namespace sdiff::plugin
