// RocksMasterHooks: the master's session hooks (engine/master_hooks.h's
// MasterHooks) served from a live RocksDB: repair reads through a snapshot,
// the bootstrap scan, writes from writers, the database files for cloners.
// Positions and resumability come from the BatchLog, whose tree the sessions
// compare against; auditors are added by the Master, which owns the audit.
//
// Threads: the getters (current_seq, key_count, can_resume) from the
// sessions' I/O strands; the database work (read, the bootstrap cursor,
// write, open_files) from the server's database workers, one piece at a
// time per session; several sessions at once. Each set of hooks (Make)
// belongs to one session.
#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/server_session.h"
#include "plugin/batch_log.h"
#include "plugin/disk_reserve.h"
#include "plugin/tree_scan.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct RocksMasterHooksOptions {
  std::string master_id;
  std::vector<LineageLink> lineage;     // see ServerOptions::lineage
  uint64_t bootstrap_min_keys = 10000;  // see ServerOptions::bootstrap_min_keys
  bool diff_on_connect = true;          // see ServerOptions::diff_on_connect
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
  // Takes the snapshot a bootstrap scans and sets *seq to the sequence its
  // followers are told it stands at; released with DB::ReleaseSnapshot.
  // Default: DB::GetSnapshot, at the snapshot's own sequence. A relay
  // (plugin/relay.h) names its master's sequence instead.
  std::function<const rocksdb::Snapshot*(uint64_t* seq)> bootstrap_snapshot;
  // See MasterHooks::newest_seq. Default: none (the log's sequence).
  std::function<uint64_t()> newest_seq;
  std::shared_ptr<spdlog::logger> logger;  // default: spdlog's default logger
};

class RocksMasterHooks {
 public:
  // `families`: the replicated column families with their tags. `log` and
  // `db` outlive this. `wrote` is called after each write through the master
  // (to wake the tailer).
  RocksMasterHooks(rocksdb::DB* db, TaggedFamilies families, BatchLog* log,
                   std::function<void()> wrote, RocksMasterHooksOptions options);

  // The sessions' options: identity, families, bootstrap and diff policy.
  ServerOptions SessionOptions() const;
  // One session's hooks (each has its own bootstrap cursor). `audit` is unset.
  MasterHooks Make();

 private:
  // Values of `keys` from one snapshot; absent keys as nullopt.
  Status Read(const std::vector<KeyRef>& keys, std::vector<std::optional<std::string>>* values);
  // A writer's ops, committed with DB::Write; *seq: the DB's sequence after it.
  Status Write(const std::vector<Op>& ops, uint64_t* seq);

  rocksdb::DB* const db_;
  const TaggedFamilies families_;                             // ascending tag
  std::map<FamilyTag, rocksdb::ColumnFamilyHandle*> by_tag_;  // constant
  BatchLog* const log_;
  const std::function<void()> wrote_;
  const RocksMasterHooksOptions options_;
  DiskReserve reserve_;  // checked before each writer's batch
};

}  // namespace sdiff::plugin
