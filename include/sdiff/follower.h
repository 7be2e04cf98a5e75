// sdiff::Follower: a read replica of a master's RocksDB, kept in a RocksDB
// directory of its own.
//
//   sdiff::FollowerOptions options;
//   options.db_path = "/var/lib/replica";
//   options.master = "m1:8123";
//   std::unique_ptr<sdiff::Follower> follower;
//   sdiff::Status s = sdiff::Follower::Open(options, &follower);
//   follower->db()->Get(rocksdb::ReadOptions(), follower->column_family("default"), key, &value);
//
// Open opens (or creates) the database and follows the master for as long as
// the Follower lives: it resumes, diffs or bootstraps on every (re)connect,
// applies each master batch atomically, and reconnects after any failure. The
// database is for reading only: a write of the caller's is overwritten or
// deleted by the next diff. Other processes read it with sdiff::ReplicaReader
// (sdiff/replica_reader.h).
// Public (include/sdiff/): needs no RocksDB, Boost or internal header.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>

#include "sdiff/options.h"
#include "sdiff/status.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace sdiff {

namespace plugin {
class Follower;
}  // namespace plugin

class Follower {
 public:
  // Errors name the path: missing with create_if_missing false, locked by
  // another process, or not a RocksDB directory. An unreachable master is
  // not an error: the follower keeps trying (status().last_error says why).
  static Status Open(FollowerOptions options, std::unique_ptr<Follower>* out);
  ~Follower();  // stops following (finishing the write in hand), then closes the DB
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  FollowerStatus status() const;
  // The port it serves followers of its own on (FollowerOptions::listen); 0: none.
  uint16_t port() const;
  // Asks the master for a diff now (anti-entropy on demand).
  void RequestSync();
  // Waits until pred(status()) holds or the timeout passes; returns pred's
  // last value. pred runs on the caller's thread and must not call back
  // into this Follower.
  bool WaitFor(const std::function<bool(const FollowerStatus&)>& pred,
               std::chrono::milliseconds timeout) const;
  // Read-your-writes: waits until the replica holds every master write up
  // to master sequence `seq` (the `seq` a write through the master was
  // acknowledged with, `sdiff-ldb --print-seq`): OK, or TimedOut when
  // `timeout` passes first. While a diff or bootstrap rewrites the replica
  // it holds no one master sequence, and the wait goes on until it is done.
  Status WaitForSequence(uint64_t seq, std::chrono::milliseconds timeout) const;

  // For reads; valid while the Follower lives.
  rocksdb::DB* db();
  // A replicated column family by the master's name ("default" for the
  // default one), or null if the master has not announced it yet. Valid
  // while the Follower lives.
  rocksdb::ColumnFamilyHandle* column_family(std::string_view name) const;
  // Checks the replica's tree against its data now; where they differ, the
  // tree is corrected and the master asked for a diff, which repairs the
  // data. OK with result->mismatches == 0: the tree equals the data. One
  // audit runs at a time; the periodic one (options.audit_interval) calls this too.
  Status Audit(AuditResult* result);

 private:
  explicit Follower(std::unique_ptr<plugin::Follower> impl);

  const std::unique_ptr<plugin::Follower> impl_;
};

}  // namespace sdiff
