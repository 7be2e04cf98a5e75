// Attaching to a caller's RocksDB: checks, tree, tailer, server.
#include "plugin/master.h"

#include <fmt/ranges.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/comparator.h>
#include <rocksdb/snapshot.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <typeinfo>

namespace sdiff::plugin {
namespace {

// Refuses a family whose data the merkle tree would not mirror: one ordered
// by another comparator (the tree and every follower apply range deletes
// bytewise, and followers open families with the bytewise comparator), and,
// unless the embedder accepts it, one whose data RocksDB changes without a
// WAL record (the tree and the followers would keep what it drops).
Status CheckFamily(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family,
                   bool accept_changes_outside_wal) {
  const std::string name = "column family '" + family->GetName() + "'";
  rocksdb::ColumnFamilyOptions o = db->GetOptions(family);
  const rocksdb::Comparator* bytewise = rocksdb::BytewiseComparator();
  if (o.comparator != bytewise && std::string(o.comparator->Name()) != bytewise->Name()) {
    return Status::InvalidArgument(
        name + " uses comparator '" + o.comparator->Name() +
        "': sdiff replicates bytewise-ordered families only (followers order keys bytewise, so "
        "range deletes would cover other keys there)");
  }
  if (accept_changes_outside_wal) return Status::OK();
  std::string cause;
  if (o.compaction_filter != nullptr) {
    cause = std::string("compaction filter '") + o.compaction_filter->Name() + "'";
  } else if (o.compaction_filter_factory != nullptr) {
    std::string factory = o.compaction_filter_factory->Name();
    cause = "compaction filter factory '" + factory + "'" +
            (factory.find("Ttl") != std::string::npos ? " (a TTL database)" : "");
  } else if (o.compaction_style == rocksdb::kCompactionStyleFIFO) {
    cause = "FIFO compaction (it deletes whole files)";
  }
  if (cause.empty()) return Status::OK();
  return Status::InvalidArgument(
      name + " has " + cause +
      ": it drops or changes data without a WAL record, which the tree and the followers never "
      "see; set MasterOptions::accept_changes_outside_wal to replicate it anyway (the self-audit "
      "then repairs within audit_interval)");
}

}  // namespace

// What the server reads: the stream and the tree from the batch log, the
// database through the RocksDB hooks, and audits from the master's auditor
// (one at a time with the periodic one, same rate limit).
class Master::Hub : public MasterHub {
 public:
  Hub(BatchLog* log, RocksMasterHooks* hooks) : log_(log), hooks_(hooks) {}

  // Until it is set (Attach sets it once the tailer runs), auditors are told
  // to come back; the owner stops the server before the auditor goes.
  void set_auditor(Auditor* auditor) { auditor_.store(auditor, std::memory_order_release); }

  ServerOptions SessionOptions() override { return hooks_->SessionOptions(); }
  MasterHooks SessionHooks() override {
    MasterHooks hooks = hooks_->Make();
    hooks.audit = [this](AuditReport* report) { return Audit(report); };
    return hooks;
  }
  void Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) override {
    log_->Subscribe(std::move(sink), from_seq);
  }
  void RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) override {
    log_->RequestSnapshot(sink, seq);
  }
  void Unsubscribe(const BatchSink* sink) override { log_->Unsubscribe(sink); }

 private:
  // On the server's blocking worker (MasterHooks::audit).
  Status Audit(AuditReport* report) {
    Auditor* auditor = auditor_.load(std::memory_order_acquire);
    if (auditor == nullptr) {
      return Status::Aborted("the master is still starting; its self-audit is not ready");
    }
    AuditResult result;
    Status s = auditor->Run(&result);
    if (!s.ok()) return s;
    report->seq = result.seq;
    report->keys = result.keys;
    report->mismatches = result.mismatches;
    report->examples = std::move(result.examples);
    report->micros = static_cast<uint64_t>(std::llround(result.seconds * 1e6));
    return Status::OK();
  }

  BatchLog* const log_;
  RocksMasterHooks* const hooks_;
  std::atomic<Auditor*> auditor_{nullptr};
};

Status Master::Attach(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                      MasterOptions options, std::unique_ptr<Master>* out) {
  if (db == nullptr) return Status::InvalidArgument("Master::Attach: no database");
  if (options.allow_writers && options.server.secret.empty()) {
    return Status::InvalidArgument(
        "allow_writers needs a shared secret (server.secret): writers must authenticate");
  }
  auto log = options.server.logger ? options.server.logger : spdlog::default_logger();
  // RocksDB 7 has no public accessor for a TransactionDB's write policy; the
  // write-prepared and write-unprepared implementations are their own classes.
  std::string type = typeid(*db).name();
  if (type.find("WritePreparedTxnDB") != std::string::npos ||
      type.find("WriteUnpreparedTxnDB") != std::string::npos) {
    return Status::InvalidArgument(
        "TransactionDB write policy is not WRITE_COMMITTED: its WAL holds uncommitted writes, "
        "so it cannot be replicated; use TxnDBWritePolicy::WRITE_COMMITTED");
  }
  rocksdb::DBOptions db_options = db->GetDBOptions();
  if (db_options.wal_compression != rocksdb::kNoCompression) {
    return Status::InvalidArgument(
        "wal_compression is on: the tailer reads the WAL files itself and does not decompress "
        "them; turn wal_compression off");
  }
  if (db_options.unordered_write) {
    return Status::InvalidArgument("unordered_write is on: the WAL order is not the commit order");
  }
  if (db_options.manual_wal_flush) {
    // What sits in the WAL buffer is published but not in the file.
    return Status::InvalidArgument(
        "manual_wal_flush is on: committed writes reach the WAL file only at the application's "
        "FlushWAL(), so they cannot be tailed; turn manual_wal_flush off");
  }
  if (db_options.WAL_ttl_seconds == 0 && db_options.WAL_size_limit_MB == 0) {
    log->warn(
        "WAL_ttl_seconds and WAL_size_limit_MB are 0: RocksDB deletes WAL files once flushed, so "
        "followers resume only from the in-memory window and otherwise diff; keep WAL files by "
        "setting DBOptions::WAL_ttl_seconds (e.g. 600) or WAL_size_limit_MB "
        "(sdiff-rocks-master: --wal-ttl-seconds or --wal-size-limit-mb)");
  }

  if (families.empty()) families.push_back(db->DefaultColumnFamily());
  for (auto* family : families) {
    Status s = CheckFamily(db, family, options.accept_changes_outside_wal);
    if (!s.ok()) return s;
  }

  std::unique_ptr<Master> master(new Master());
  master->db_ = db;
  master->master_id_ = options.master_id;
  if (master->master_id_.empty()) {
    rocksdb::Status s = db->GetDbIdentity(master->master_id_);
    if (!s.ok()) return Status::IOError("cannot read the DB identity: " + s.ToString());
  }
  master->log_ = std::make_unique<BatchLog>(BatchLogOptions{
      options.resume_window_bytes, options.key_hasher, log, options.server.bulk_frame_bytes});
  WalTailerOptions t;
  t.poll_interval = options.poll_interval;
  t.progress = options.progress;
  t.logger = log;
  Status s = WalTailer::Create(db, std::move(families), t, master->log_.get(), &master->tailer_);
  if (!s.ok()) return s;
  RocksMasterHooksOptions h;
  h.master_id = master->master_id_;
  master->lineage_ = options.lineage;
  h.lineage = options.lineage;
  h.bootstrap_min_keys = options.bootstrap_min_keys;
  h.diff_on_connect = options.diff_on_connect;
  h.allow_writers = options.allow_writers;
  h.sync_writes = options.sync_writes;
  h.min_free_bytes = options.min_free_bytes;
  h.free_bytes = options.free_bytes;
  h.serve_files = options.serve_files;
  h.logger = log;
  master->hooks_ = std::make_unique<RocksMasterHooks>(
      db, master->tailer_->TaggedFamilyList(), master->log_.get(),
      [tailer = master->tailer_.get()] { tailer->NotifyOwnWrite(); }, h);
  options.server.logger = log;
  master->hub_ = std::make_unique<Hub>(master->log_.get(), master->hooks_.get());
  s = net::MasterServer::Start(master->hub_.get(), options.server, &master->server_);
  if (!s.ok()) return s;
  master->tailer_->set_on_rebuild([m = master.get()] { m->server_->RequestSyncAll(); });
  if (options.listener) {
    master->listener_ = options.listener;
    net::MutexLock lock(&options.listener->mu_);
    options.listener->tailer_ = master->tailer_.get();
  }
  master->tailer_->Start();
  master->auditor_ = std::make_unique<Auditor>(
      options.audit, log, Auditor::Words{"the tree", "the database", "followers will diff"},
      [m = master.get()](const TreeScanOptions& scan, AuditResult* result) {
        return m->AuditOnce(scan, result);
      });
  master->hub_->set_auditor(master->auditor_.get());
  *out = std::move(master);
  return Status::OK();
}

void MasterListener::OnExternalFileIngested(rocksdb::DB*,
                                            const rocksdb::ExternalFileIngestionInfo& info) {
  net::MutexLock lock(&mu_);
  if (tailer_ != nullptr) tailer_->RequestRebuild("file ingested: " + info.external_file_path);
}

Master::~Master() {
  if (auditor_) auditor_->Cancel();  // an audit under way stops scanning
  if (listener_) {
    net::MutexLock lock(&listener_->mu_);
    listener_->tailer_ = nullptr;
  }
  // Sessions first (they read through the tailer, and an auditor's audit runs
  // on the server's worker until Stop returns), then the auditor, then the tailer.
  if (server_) server_->Stop();
  auditor_.reset();
  if (tailer_) tailer_->Stop();
}

MasterStatus Master::status() {
  MasterStatus st;
  WalTailerStats t = tailer_->stats();
  BatchLogStats l = log_->stats();
  st.tailed_seq = l.tailed_seq;
  st.db_seq = db_->GetLatestSequenceNumber();
  st.keys = l.keys;
  st.root = l.root;
  st.rebuilds = t.rebuilds;
  st.rebuild_pending = t.rebuild_pending;
  st.audit = auditor_->stats();
  st.left_out_keys = l.left_out_keys;
  st.server = server_->stats();
  st.lineage = lineage_;
  return st;
}

}  // namespace sdiff::plugin

namespace sdiff::plugin {
namespace {

// The longest an audit waits for the tailer to bring the tree to a snapshot's
// sequence: the tailer is normally within milliseconds of the database.
constexpr std::chrono::seconds kTreeReachTimeout{30};

std::string FamilyName(const TaggedFamilies& families, FamilyTag tag) {
  for (const auto& [t, handle] : families) {
    if (t == tag) return handle->GetName();
  }
  return std::to_string(tag);
}

}  // namespace

Status Master::Audit(AuditResult* result) { return auditor_->Run(result); }

Status Master::AuditOnce(const TreeScanOptions& scan, AuditResult* result) {
  const TaggedFamilies families = tailer_->TaggedFamilyList();
  std::vector<DiffEntry> differing;
  // The tree stops at every snapshot's sequence unless a rebuild jumps over
  // it; a second try starts after the jump.
  for (int attempt = 0;; ++attempt) {
    rocksdb::ManagedSnapshot snapshot(db_);
    const uint64_t seq = snapshot.snapshot()->GetSequenceNumber();
    TreeView tree;
    if (!log_->RunAtSequence(seq, kTreeReachTimeout, [&](MerkleTree* live) {
          tree = live->Snapshot();
          return false;  // read, not changed
        })) {
      if (attempt < 2) continue;
      return Status::Aborted("the tree did not stop at the database's sequence " +
                             std::to_string(seq) + " (the tailer lags or rebuilt)");
    }
    result->seq = seq;
    Status s = FindTreeMismatches(db_, snapshot.snapshot(), families, tree, scan, &differing,
                                  &result->keys);
    if (!s.ok()) return s;
    break;
  }
  if (differing.empty()) return Status::OK();
  if (differing.size() > kMaxAuditCorrections) {
    result->mismatches = differing.size();
    for (size_t i = 0; i < kAuditExamples; ++i) {
      result->examples.push_back(
          PrintableKey(FamilyName(families, differing[i].family), differing[i].key));
    }
    tailer_->RequestRebuild("the self-audit found " + std::to_string(differing.size()) +
                            " keys that differ from the database");
    return Status::OK();
  }
  return CorrectTree(differing, result);
}

Status Master::CorrectTree(const std::vector<DiffEntry>& differing, AuditResult* result) {
  // A key can differ at S only because the tree ran ahead of S for it (a
  // merge is resolved when tailed, which can be after later merges): read
  // every differing key again at a newer sequence and correct the tree there
  // only where it still differs.
  const TaggedFamilies families = tailer_->TaggedFamilyList();
  rocksdb::ManagedSnapshot snapshot(db_);
  const uint64_t seq = snapshot.snapshot()->GetSequenceNumber();
  rocksdb::ReadOptions read;
  read.snapshot = snapshot.snapshot();
  std::vector<std::optional<std::string>> values;
  for (const DiffEntry& d : differing) {
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    for (const auto& [tag, h] : families) {
      if (tag == d.family) handle = h;
    }
    std::string value;
    rocksdb::Status s = db_->Get(read, handle, d.key, &value);
    if (s.ok()) {
      values.emplace_back(std::move(value));
    } else if (s.IsNotFound()) {
      values.emplace_back(std::nullopt);
    } else {
      return Status::IOError("self-audit: reading a differing key: " + s.ToString());
    }
  }
  std::vector<size_t> corrected;
  bool ran = log_->RunAtSequence(seq, kTreeReachTimeout, [&](MerkleTree* tree) {
    for (size_t i = 0; i < differing.size(); ++i) {
      const DiffEntry& d = differing[i];
      std::optional<Hash128> want;
      if (values[i]) want = LeafHash(tree->hasher()(d.family, d.key), *values[i]);
      if (tree->Find(d.family, d.key) == want) continue;
      if (values[i]) {
        if (!tree->Put(d.family, d.key, *values[i]).ok()) continue;  // a key-hash collision
      } else {
        tree->Erase(d.family, d.key);
      }
      corrected.push_back(i);
    }
    return !corrected.empty();
  });
  if (!ran) {
    return Status::Aborted("the tree did not stop at sequence " + std::to_string(seq) +
                           " to be corrected (the tailer lags or rebuilt)");
  }
  result->mismatches = corrected.size();
  for (size_t i = 0; i < corrected.size() && i < kAuditExamples; ++i) {
    const DiffEntry& d = differing[corrected[i]];
    result->examples.push_back(PrintableKey(FamilyName(families, d.family), d.key));
  }
  if (!corrected.empty()) server_->RequestSyncAll();
  return Status::OK();
}

Status Master::WaitForFollowers(uint64_t seq, size_t count, std::chrono::milliseconds timeout) {
  if (server_->acks().Wait(seq, count, timeout)) return Status::OK();
  return Status::TimedOut(std::to_string(server_->acks().CountAt(seq)) + " of " +
                          std::to_string(count) + " followers applied sequence " +
                          std::to_string(seq) + " within " + std::to_string(timeout.count()) +
                          " ms");
}

}  // namespace sdiff::plugin
