// Master: replicates a RocksDB that the caller opened and keeps writing to.
//
//   std::unique_ptr<sdiff::plugin::Master> master;
//   Status s = Master::Attach(db, {db->DefaultColumnFamily(), other_cf}, options, &master);
//
// Attach builds the merkle tree from a snapshot, tails the WAL from there and
// serves followers on options.server.listen. The caller's writes are not
// changed; NotifyWrite() after a write wakes the tailer at once (without it,
// new writes are seen within options.poll_interval; an application that
// notifies is trusted to notify every write, WalTailerOptions::
// idle_poll_interval). Destroying the Master
// stops serving and tailing; it never closes the DB, which must outlive it.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/listener.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/status.h"
#include "net/master_server.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "plugin/audit.h"
#include "plugin/batch_log.h"
#include "plugin/progress.h"
#include "plugin/rocks_master_hooks.h"
#include "plugin/wal_tailer.h"

namespace sdiff::plugin {

// Add to rocksdb::Options::listeners before DB::Open and pass it in
// MasterOptions::listener: an IngestExternalFile that lands without a
// sequence number of its own never shows in the WAL, and this is how the
// master learns of it (it rebuilds its tree and has followers diff).
class MasterListener : public rocksdb::EventListener {
 public:
  void OnExternalFileIngested(rocksdb::DB* db,
                              const rocksdb::ExternalFileIngestionInfo& info) override;

 private:
  friend class Master;
  net::Mutex mu_;
  WalTailer* tailer_ GUARDED_BY(mu_) = nullptr;  // set while a Master is attached
};

struct MasterOptions {
  std::shared_ptr<MasterListener> listener;  // see MasterListener; optional
  net::MasterServerOptions server;           // listen address, secret, TLS, limits
  std::string master_id;                     // default: the DB's identity (DB::GetDbIdentity)
  // Earlier identities whose followers resume on this master (a promoted
  // follower's record, plugin/lineage.h: TakeAsMaster). Default: none.
  std::vector<LineageLink> lineage;
  std::chrono::milliseconds poll_interval{1};
  size_t resume_window_bytes = 64 << 20;  // recent batches kept for resuming followers
  uint64_t bootstrap_min_keys = 10000;
  // Diff followers that cannot resume as soon as they connect. Default: true.
  bool diff_on_connect = true;
  // Reports the tree build at Attach and after a gap (see plugin/progress.h). Default: none.
  ProgressFn progress;
  // Clients in the writer role may write through this master (sdiff-ldb --master
  // put, delete, load); their batches reach the DB with DB::Write and the
  // followers through the WAL like any other write. Needs server.secret
  // (Attach refuses it without one). Default: false.
  bool allow_writers = false;
  // A writer's batch is acknowledged only once it is durable in the master's
  // WAL (WriteOptions::sync): a power loss after the ack cannot lose it.
  // Without it an acknowledged write survives a crash of the process (it is
  // in the OS's page cache) but not of the machine. Costs an fsync per
  // batch. Default: false. (sdiff-rocks-master --sync)
  bool sync_writes = false;
  // Writes through the master are refused while the database's disk has
  // less than this free (plugin/disk_reserve.h); the application's own
  // writes are its own. 0: no check. Default: 256 MiB.
  uint64_t min_free_bytes = 256 << 20;
  // Testing seam: see DiskReserveOptions::free_bytes.
  std::function<uint64_t(const std::string& path)> free_bytes;
  // Replicate families whose data RocksDB changes without a WAL record (a
  // compaction filter or filter factory, a TTL database, FIFO compaction).
  // Attach refuses them by default: the tree and the followers keep what such
  // a change drops until the self-audit finds it, so with this set followers
  // may hold dropped data for up to audit_interval plus one audit's scan.
  // Default: false.
  bool accept_changes_outside_wal = false;
  // The self-audit (plugin/audit.h): how often the tree is checked against
  // the database, and how fast the check reads.
  AuditOptions audit;
  // An empty follower of a master holding bootstrap_min_keys or more may copy
  // the database files instead of receiving the keys (plugin/db_files.h says
  // when a copy is refused). Default: true.
  bool serve_files = true;
  // Testing seam: how the tree hashes keys, to force key-hash collisions.
  // Master and followers must agree. Default: KeyHash (docs/protocol.md).
  KeyHasher key_hasher = &KeyHash;
};

struct MasterStatus {
  uint64_t tailed_seq = 0;  // last sequence in the tree and the stream
  uint64_t db_seq = 0;      // the DB's latest sequence
  size_t keys = 0;
  Hash128 root;
  uint64_t rebuilds = 0;
  // A rebuild was asked for (an ingested file) and has not finished yet.
  bool rebuild_pending = false;
  AuditStats audit;
  size_t left_out_keys = 0;  // see BatchLogStats::left_out_keys
  net::MasterServerStats server;
  std::vector<LineageLink> lineage;  // MasterOptions::lineage
};

class Master {
 public:
  // `families` lists the column families to replicate (default: the default one).
  static Status Attach(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                       MasterOptions options, std::unique_ptr<Master>* out);
  ~Master();
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  void NotifyWrite() { tailer_->NotifyWrite(); }
  void RequestSyncAll() { server_->RequestSyncAll(); }
  // Blocks until `count` connected followers have applied every write up to
  // master sequence `seq` (a WriteAck's seq, or db->GetLatestSequenceNumber()
  // after the caller's write): OK; TimedOut when `timeout` passes first.
  // Woken by the followers' reports, not by polling. Followers count once
  // their session has verified them (net::SessionStats::acked_seq).
  Status WaitForFollowers(uint64_t seq, size_t count, std::chrono::milliseconds timeout);
  uint16_t port() const { return server_->port(); }
  const std::string& master_id() const { return master_id_; }
  const std::vector<LineageLink>& lineage() const { return lineage_; }
  MasterStatus status();
  // Checks the tree against the database now (plugin/audit.h): scans a
  // snapshot at sequence S and compares it with the tree as of S. Keys that
  // differ are corrected in the tree, and every follower is asked to diff.
  // OK with result->mismatches == 0: the tree equals the data. Fails when
  // the scan fails or the tree did not stop at S (a rebuild passed it).
  // One audit runs at a time; the periodic one (options.audit) calls this,
  // and so does an auditor's request (`sdiff-ldb --master audit`), which the
  // server runs on its blocking worker.
  Status Audit(AuditResult* result);

 private:
  Master() = default;
  Status AuditOnce(const TreeScanOptions& scan, AuditResult* result);
  // Confirms each differing key at a newer position and corrects the tree.
  Status CorrectTree(const std::vector<DiffEntry>& differing, AuditResult* result);
  // What the server reads: the log, the RocksDB hooks and the auditor.
  class Hub;

  rocksdb::DB* db_ = nullptr;
  std::string master_id_;
  std::vector<LineageLink> lineage_;
  std::shared_ptr<MasterListener> listener_;
  std::unique_ptr<BatchLog> log_;  // outlives the tailer, its writer
  std::unique_ptr<WalTailer> tailer_;
  std::unique_ptr<RocksMasterHooks> hooks_;
  std::unique_ptr<Hub> hub_;  // outlives server_, which calls it
  std::unique_ptr<net::MasterServer> server_;
  std::unique_ptr<Auditor> auditor_;
};

}  // namespace sdiff::plugin
