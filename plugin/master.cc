// Attaching to a caller's RocksDB: checks, tree, tailer, server.
#include "plugin/master.h"

#include <spdlog/spdlog.h>

#include <typeinfo>

namespace sdiff::plugin {

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
  if (db_options.unordered_write) {
    return Status::InvalidArgument("unordered_write is on: the WAL order is not the commit order");
  }
  if (db_options.manual_wal_flush) {
    // RocksDB's log iterator cannot read what sits in the WAL buffer; in 7.8
    // it even asserts (aborts the process) on a log it finds empty.
    return Status::InvalidArgument(
        "manual_wal_flush is on: committed writes reach the WAL file only at the application's "
        "FlushWAL(), so they cannot be tailed; turn manual_wal_flush off");
  }
  if (db_options.WAL_ttl_seconds == 0 && db_options.WAL_size_limit_MB == 0) {
    log->warn(
        "WAL_ttl_seconds and WAL_size_limit_MB are 0: RocksDB deletes WAL files once flushed, so "
        "followers resume only from the in-memory window and otherwise diff");
  }

  std::unique_ptr<Master> master(new Master());
  master->db_ = db;
  master->master_id_ = options.master_id;
  if (master->master_id_.empty()) {
    rocksdb::Status s = db->GetDbIdentity(master->master_id_);
    if (!s.ok()) return Status::IOError("cannot read the DB identity: " + s.ToString());
  }
  WalTailerOptions t;
  t.master_id = master->master_id_;
  t.poll_interval = options.poll_interval;
  t.resume_window_bytes = options.resume_window_bytes;
  t.bootstrap_min_keys = options.bootstrap_min_keys;
  t.diff_on_connect = options.diff_on_connect;
  t.progress = options.progress;
  t.allow_writers = options.allow_writers;
  t.serve_files = options.serve_files;
  t.key_hasher = options.key_hasher;
  t.logger = log;
  Status s = WalTailer::Create(db, std::move(families), t, &master->tailer_);
  if (!s.ok()) return s;
  options.server.logger = log;
  s = net::MasterServer::Start(master->tailer_.get(), options.server, &master->server_);
  if (!s.ok()) return s;
  master->tailer_->set_on_rebuild([m = master.get()] { m->server_->RequestSyncAll(); });
  if (options.listener) {
    master->listener_ = options.listener;
    std::lock_guard lock(options.listener->mu_);
    options.listener->tailer_ = master->tailer_.get();
  }
  master->tailer_->Start();
  *out = std::move(master);
  return Status::OK();
}

void MasterListener::OnExternalFileIngested(rocksdb::DB*,
                                            const rocksdb::ExternalFileIngestionInfo& info) {
  std::lock_guard lock(mu_);
  if (tailer_ != nullptr) tailer_->RequestRebuild("file ingested: " + info.external_file_path);
}

Master::~Master() {
  if (listener_) {
    std::lock_guard lock(listener_->mu_);
    listener_->tailer_ = nullptr;
  }
  // Sessions first (they read through the tailer), then the tailer.
  if (server_) server_->Stop();
  if (tailer_) tailer_->Stop();
}

MasterStatus Master::status() {
  MasterStatus st;
  WalTailerStats t = tailer_->stats();
  st.tailed_seq = t.tailed_seq;
  st.db_seq = db_->GetLatestSequenceNumber();
  st.keys = t.keys;
  st.root = t.root;
  st.rebuilds = t.rebuilds;
  st.left_out_keys = t.left_out_keys;
  st.server = server_->stats();
  return st;
}

}  // namespace sdiff::plugin
