// WAL tailing: the WAL's records as Batches appended to the log (see wal_tailer.h).
#include "plugin/wal_tailer.h"

#include <pthread.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "plugin/tree_scan.h"
#include "plugin/wal_reader.h"

namespace sdiff::plugin {
namespace {

constexpr char kReservedFamily[] = "__sdiff";
// Batches one pass must find before the tailer lingers (see Run).
constexpr size_t kLingerBatches = 4;
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

  // Room for `records` ops, so that a large batch's vector is allocated
  // once rather than regrown (and its ops moved) eight times.
  void Reserve(size_t records) {
    if (data_wanted_) record_.ops.reserve(records);
  }
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

}  // namespace

WalTailer::WalTailer(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                     WalTailerOptions options, BatchLog* log)
    : db_(db),
      options_(std::move(options)),
      log_(log),
      logger_(options_.logger ? options_.logger : spdlog::default_logger()) {
  for (auto* h : families) families_[h->GetID()] = h;
}

Status WalTailer::Create(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                         WalTailerOptions options, BatchLog* log, std::unique_ptr<WalTailer>* out) {
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
  std::unique_ptr<WalTailer> tailer(
      new WalTailer(db, std::move(families), std::move(options), log));
  Status s = tailer->Rebuild();
  if (!s.ok()) return s;
  *out = std::move(tailer);
  return Status::OK();
}

WalTailer::~WalTailer() {
  Stop();
  log_->set_writer_wake(nullptr);
}

TaggedFamilies WalTailer::TaggedFamilyList() const {
  TaggedFamilies out;
  for (const auto& [id, handle] : families_) out.emplace_back(static_cast<FamilyTag>(id), handle);
  return out;
}

Status WalTailer::Rebuild() {
  log_->Flush();  // what was tailed before the jump goes out before it, even if this fails
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  uint64_t seq = snapshot->GetSequenceNumber();
  MerkleTree tree(log_->key_hasher());
  TreeScanOptions scan;
  scan.progress = [this](const Progress& p) {
    if (p.done > 0 && p.done % 1'000'000 < (1 << 16) && !p.finished) {
      logger_->info("building the tree: {} keys", p.done);
    }
    if (options_.progress) options_.progress(p);
  };
  Status result = ScanIntoTree(db_, snapshot, TaggedFamilyList(), scan, &tree);
  db_->ReleaseSnapshot(snapshot);
  if (!result.ok()) return result;
  logger_->info("tree of {} keys built at sequence {}, root {}", tree.size(), seq,
                tree.root_hash().ToHex());
  if (tree.left_out() > 0) {
    logger_->warn("{} keys left out of the tree: their key hashes collide with other keys'",
                  tree.left_out());
  }
  log_->Reset(std::move(tree), seq);
  return Status::OK();
}

void WalTailer::Start() {
  if (thread_.joinable()) return;
  log_->set_writer_wake([this] { Wake(); });
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sdiff-tailer");  // as top -H and perf show it
    Run();
  });
}

void WalTailer::Stop() {
  {
    net::MutexLock lock(&wake_mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void WalTailer::RequestRebuild(std::string reason) {
  {
    net::MutexLock lock(&wake_mu_);
    rebuild_reason_ = std::move(reason);
    rebuild_pending_ = true;
  }
  wake_.Signal();
}

void WalTailer::Wake() {
  {
    net::MutexLock lock(&wake_mu_);
    woken_ = true;
  }
  wake_.Signal();
}

// Called after every write of a busy application: while the tailer is awake
// it costs a fence and a load, not a lock and a futex call.
void WalTailer::NotifyOwnWrite() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!sleeping_.load(std::memory_order_relaxed)) return;
  Wake();
}

void WalTailer::NotifyWrite() {
  // A load first: a store on every write would bounce the cache line
  // between the application's threads.
  if (!notified_.load(std::memory_order_relaxed)) notified_.store(true, std::memory_order_relaxed);
  NotifyOwnWrite();
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
  uint64_t expected = log_->tailed_seq() + 1;
  // How long an idle look sleeps (see WalTailerOptions::idle_poll_interval).
  std::chrono::steady_clock::duration idle_sleep = options_.poll_interval;
  auto gap = [&](const std::string& why) {
    logger_->warn("WAL gap at sequence {}: {}; rebuilding the tree, followers will diff", expected,
                  why);
    reader.reset();
    held.reset();
    Status s = Rebuild();
    if (!s.ok()) logger_->error("rebuilding the tree failed: {}", s.ToString());
    {
      net::MutexLock lock(&wake_mu_);
      ++rebuilds_;
    }
    expected = log_->tailed_seq() + 1;
    if (on_rebuild_) on_rebuild_();
  };
  for (;;) {
    std::string rebuild_reason;
    {
      net::MutexLock lock(&wake_mu_);
      if (stop_) return;
      rebuild_reason = std::exchange(rebuild_reason_, {});
    }
    if (!rebuild_reason.empty()) {
      gap(rebuild_reason);
      net::MutexLock lock(&wake_mu_);
      rebuild_pending_ = !rebuild_reason_.empty();  // asked again meanwhile
    }
    bool progressed = false;
    size_t batches = 0;
    // RocksDB writes a batch's WAL record, flushed to the file, before it
    // publishes the batch's sequence numbers: every logged write up to `seen`
    // is readable now.
    const uint64_t seen = db_->GetLatestSequenceNumber();
    if (!reader) {
      reader = std::make_unique<WalReader>(db_, logger_);
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
        // Nothing published past the tree: any record in the file now is
        // one still being written (it would be held), or consumes no
        // sequence number and can wait for the next that does. Reading to
        // the file's end would cost a read() that finds nothing, once per
        // pass of a busy tailer and once per poll of an idle one.
        if (seen < expected && db_->GetLatestSequenceNumber() < expected) {
          at_end = true;
          break;
        }
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
        logger_->error("WAL record at sequence {}: {}", seq, s.ToString());
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
        logger_->error("batch at sequence {}: {}", seq, s.ToString());
        gap(s.ToString());
        break;
      }
      expected = next;
      progressed = true;
      ++batches;
    }
    if (progressed) log_->Flush();
    if (at_end && seen >= expected) {
      // Every logged write up to `seen` is in the files read, and none holds
      // `expected`: the write that took it had disableWAL, or was an
      // ingested file given a sequence number. Waiting for a later write
      // would leave the tree and every follower without it until then.
      gap("the WAL holds nothing from there, though the database is at sequence " +
          std::to_string(seen));
      continue;
    }
    log_->RunTreeTasks();  // those asked for the position the tree rests at
    net::MutexLock lock(&wake_mu_);
    if (progressed) {
      idle_sleep = options_.poll_interval;
      // Several batches in one pass: the writer is fast. Let its next ones
      // gather for a moment, unwoken by NotifyWrite, so they reach the
      // server and the follower together (one wake-up, send and write for
      // many) instead of one at a time. Two or three are what a slow writer
      // leaves during one linger: below kLingerBatches the tailer goes back
      // to waking per write, so a slow writer's batches are not delayed.
      if (batches >= kLingerBatches && options_.linger.count() > 0) {
        WaitLocked(options_.linger, /*until_woken=*/false);
      }
      continue;
    }
    // NotifyWrite signals only while sleeping_ is set; a write it saw us
    // awake for advanced the DB's sequence past `seen` (the fences pair with
    // NotifyWrite's), so look at the WAL again instead of sleeping.
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (db_->GetLatestSequenceNumber() == seen) {
      ++idle_looks_;
      WaitLocked(idle_sleep, /*until_woken=*/true);
      // Slept its full time: nothing was written, or nothing notified. An
      // application that notifies is trusted to, and the next sleep doubles.
      if (!woken_ && notified_.load(std::memory_order_relaxed)) {
        idle_sleep = std::min<std::chrono::steady_clock::duration>(
            2 * idle_sleep, std::max(options_.poll_interval, options_.idle_poll_interval));
      } else {
        idle_sleep = options_.poll_interval;
      }
    }
    sleeping_.store(false, std::memory_order_relaxed);
    woken_ = false;
  }
}

void WalTailer::WaitLocked(std::chrono::steady_clock::duration timeout, bool until_woken) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!stop_ && rebuild_reason_.empty() && !(until_woken && woken_)) {
    if (!wake_.WaitUntil(deadline)) return;
  }
}

Status WalTailer::ReadRecord(uint64_t seq, const rocksdb::WriteBatch& wal_batch, bool data_wanted,
                             WalRecord* out) {
  OpCollector collector(families_, prepared_, data_wanted);
  // Count() is every data record, prepared or of other families too: an
  // upper bound on the ops, but for a commit's spliced-in section. A data
  // record takes at least 2 bytes of the rep, which bounds a bogus count.
  collector.Reserve(std::min<size_t>(wal_batch.Count(), wal_batch.GetDataSize() / 2));
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
  return log_->Append(std::move(batch));
}

WalTailerStats WalTailer::stats() {
  net::MutexLock lock(&wake_mu_);
  WalTailerStats s;
  s.rebuilds = rebuilds_;
  s.rebuild_pending = rebuild_pending_;
  s.idle_looks = idle_looks_;
  return s;
}

}  // namespace sdiff::plugin
