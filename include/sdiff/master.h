// sdiff::Master: replicates a RocksDB that the application opened and keeps
// writing to, serving it to followers.
//
//   rocksdb::Options db_options;
//   auto listener = sdiff::NewMasterListener();
//   db_options.listeners.push_back(listener);
//   ... rocksdb::DB::Open(db_options, path, &db) ...
//   sdiff::MasterOptions options;
//   options.listen = "0.0.0.0:8123";
//   options.secret = secret;
//   options.listener = listener;
//   std::unique_ptr<sdiff::Master> master;
//   sdiff::Status s = sdiff::Master::Attach(db, {db->DefaultColumnFamily()}, options, &master);
//   ... db->Put(...); master->NotifyWrite(); ...
//
// Attach builds a merkle tree from a snapshot, tails the WAL from there and
// serves followers. The application's writes are not changed; NotifyWrite()
// after a write wakes the tailer at once (without it, new writes are seen
// within options.poll_interval; see there for an application that notifies
// some writes only). Destroying the Master stops serving and
// tailing; it never closes the DB, which must outlive it.
// Public (include/sdiff/): needs no RocksDB, Boost or internal header.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sdiff/options.h"
#include "sdiff/status.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class EventListener;
}  // namespace rocksdb

namespace sdiff {

namespace plugin {
class Master;
}  // namespace plugin

// A listener for rocksdb::Options::listeners, to be added before DB::Open and
// passed in MasterOptions::listener: it tells the master of files ingested
// with IngestExternalFile, which never show in the WAL (the master then
// rebuilds its tree and has followers diff). One per database.
std::shared_ptr<rocksdb::EventListener> NewMasterListener();

class Master {
 public:
  // Checks that `db` can be replicated (it names what it refuses: a
  // non-bytewise comparator, WAL compression, unordered_write, ...), builds
  // the tree and starts serving on options.listen. `families` lists the
  // column families to replicate; empty: the default one. They and `db` must
  // outlive the Master.
  static Status Attach(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                       MasterOptions options, std::unique_ptr<Master>* out);
  ~Master();  // stops serving (sessions finish their frame) and tailing
  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Call after each write to the DB to replicate it at once. Thread-safe and cheap.
  void NotifyWrite();
  // Asks every connected follower to diff now (anti-entropy on demand, or
  // after changing the data outside the WAL). Until its diff completes, a
  // follower does not count for WaitForFollowers.
  void RequestSyncAll();
  // The port followers connect to: options.listen's, or the OS's pick for port 0.
  uint16_t port() const;
  // options.master_id, or the DB's identity.
  const std::string& master_id() const;
  MasterStatus status();
  // Blocks until `count` connected followers have applied every write up to
  // master sequence `seq` (db->GetLatestSequenceNumber() after a write):
  // OK, or TimedOut when `timeout` passes first (the writes stay on the
  // master either way). Followers report as they apply, so this returns
  // about one round trip after the last of them has applied `seq`.
  Status WaitForFollowers(uint64_t seq, size_t count, std::chrono::milliseconds timeout);
  // Checks the tree against the database now: scans a snapshot and compares
  // it with the tree as of the same sequence. Keys that differ are corrected
  // in the tree and every follower is asked to diff. OK with
  // result->mismatches == 0: the tree equals the data. One audit runs at a
  // time; the periodic one (options.audit_interval) calls this too.
  Status Audit(AuditResult* result);

 private:
  explicit Master(std::unique_ptr<plugin::Master> impl);

  const std::unique_ptr<plugin::Master> impl_;
};

}  // namespace sdiff
