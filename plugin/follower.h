// Follower: a read replica of a master's RocksDB, kept in a RocksDB directory.
//
//   std::unique_ptr<sdiff::plugin::Follower> follower;
//   Status s = Follower::Open({.db_path = "/var/lib/replica", .client = {.master = "m:8123"}},
//                             &follower);
//   follower->db()->Get(rocksdb::ReadOptions(), follower->column_family("meta"), key, &value);
//
// Open opens (or creates) the database and starts a client that follows the
// master for as long as the Follower lives: it resumes, diffs or bootstraps
// on every (re)connect, applies each master batch atomically, and reconnects
// after any failure. The database is for reading only: a write of the caller's
// is overwritten or deleted by the next diff. Other processes can read it with
// rocksdb::DB::OpenAsSecondary and TryCatchUpWithPrimary.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/status.h"
#include "net/follower_client.h"
#include "plugin/audit.h"
#include "plugin/clone.h"
#include "plugin/progress.h"
#include "plugin/relay.h"
#include "plugin/replica_options.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
}  // namespace rocksdb

namespace sdiff::plugin {

class FollowerProgress;
class RocksFollowerStore;

struct FollowerOptions {
  std::string db_path;
  bool create_if_missing = true;  // Default: true
  // fsync each applied write. Default: false (a machine crash can lose the
  // last writes, never a part of one; the follower then resumes before them).
  bool sync_writes = false;
  // Testing seam: the Env the database is opened with. Default: RocksDB's.
  rocksdb::Env* env = nullptr;
  // The RocksDB options the replica opens with (and a copy of the master's
  // files, and each family the master adds, is created with); create_if_missing
  // and env above win over rocks.db's. Open refuses, before touching anything,
  // options under which the replica would not mirror the master
  // (CheckReplicaOptions). Default: RocksDB's.
  ReplicaRocksOptions rocks;
  net::FollowerClientOptions client;  // master address, secret, TLS, backoff
  // Testing seam: called before each write to the database; an error fails
  // that write as a failing disk would. Default: none.
  std::function<Status()> fail_before_write;
  // Testing seam: called on the thread building a clone's tree behind the
  // stream, once its scan is done and before the writes made meanwhile are
  // applied to it. Default: none.
  std::function<void()> before_tree_built;
  // See RocksFollowerStoreOptions::min_free_bytes. Default: 256 MiB.
  uint64_t min_free_bytes = 256 << 20;
  // Testing seam: see RocksFollowerStoreOptions::free_bytes.
  std::function<uint64_t(const std::string& path)> free_bytes;
  // Reports bootstraps, file copies and repairs (see plugin/progress.h). Default: none.
  ProgressFn progress;
  // A follower with no database yet first asks the master for a copy of its
  // files (plugin/clone.h), and opens that: the fastest start for a large
  // master. When the master refuses (fewer than its bootstrap_min_keys, or a
  // configuration a copy would not reproduce) or the copy fails, it starts
  // empty and the master bootstraps or diffs it. Open blocks for the copy
  // (or for client.connect_timeout when the master is unreachable). Default: true.
  bool clone_files = true;
  // The self-audit of the replica's tree against its data (plugin/audit.h).
  // Default: every hour, at most 64 MiB/s.
  AuditOptions audit;
  // Testing seam: how the tree hashes keys, to force key-hash collisions.
  // Master and followers must agree. Default: KeyHash (docs/protocol.md).
  KeyHasher key_hasher = &KeyHash;
  // Serve followers of this follower (a chain, plugin/relay.h) on
  // relay.server.listen, with the secret, TLS and limits given there as a
  // master's. Default: none (an empty listen).
  RelayOptions relay;
  // A file where every key a diff or bootstrap changes or deletes is first
  // written, fsynced, with the value the replica had (plugin/ledger.h), so
  // that `sdiff-ldb --master=M load FILE` can replay what was overwritten.
  // Also lets Open take a directory that holds data but no follower state (a
  // former master, a plain RocksDB). Default: none.
  std::string ledger;
  // Lets Open take such a directory without a ledger: what only it holds is
  // overwritten by the first diff. Default: false (Open refuses it, touching
  // nothing, unless `ledger` is set). Not with `ledger`.
  bool discard = false;
};

struct FollowerStatus {
  bool connected = false;    // streaming from the master
  uint64_t master_seq = 0;   // the master's newest sequence we heard of
  uint64_t applied_seq = 0;  // the last master sequence applied
  uint64_t lag_seqs = 0;     // master_seq - applied_seq
  // How long it has been behind the newest master sequence it heard of, on
  // its own clock; 0 when caught up.
  int64_t lag_ms = 0;
  uint64_t bytes_in = 0;                    // from the master, since Open
  uint64_t bytes_out = 0;                   // to the master, since Open
  int64_t last_diff_unix_ms = 0;            // end of the last complete diff; 0: none since Open
  uint64_t last_diff_repaired = 0;          // keys the last diff repaired
  uint64_t diffs = 0;                       // complete diffs since Open
  uint64_t connects = 0;                    // successful handshakes since Open
  uint64_t reconnects = 0;                  // connection attempts after the first
  uint64_t bootstraps = 0;                  // connections that began with every key sent
  StartMode last_start = StartMode::kDiff;  // how the last connection began (connects > 0)
  std::string last_error;                   // why the last connection ended or failed to start
  std::string master_id;                    // whom the replica follows, as persisted
  // Keys in the replicated column families: the size of the replica's tree,
  // 0 until it is built (a fresh clone builds it after Open returns, behind
  // the stream: tree_built false meanwhile, and diffs wait for it).
  uint64_t keys = 0;
  bool tree_built = false;
  // Open copied the master's files (clone_files): this many bytes, holding
  // the master's data as of master sequence clone_seq.
  bool cloned = false;
  uint64_t clone_bytes = 0;
  uint64_t clone_seq = 0;
  AuditStats audit;  // the self-audits since Open
  // Set when it serves followers of its own (FollowerOptions::relay).
  std::optional<RelayStatus> relay;
};

class Follower {
 public:
  // Errors name the path: missing with create_if_missing false, locked by
  // another process, or not a RocksDB directory; or (InvalidArgument) the
  // RocksDB options.
  static Status Open(FollowerOptions options, std::unique_ptr<Follower>* out);
  ~Follower();  // stops the client (finishing the write in hand), then closes the DB
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  FollowerStatus status() const;
  // Asks the master for a diff now (anti-entropy on demand).
  void RequestSync();
  // Waits until pred(status()) holds or the timeout passes; returns pred's last value.
  bool WaitFor(std::function<bool(const FollowerStatus&)> pred,
               std::chrono::milliseconds timeout) const;
  // Waits until the replica holds every master write up to `seq`: the
  // applied sequence it persists (0 while a diff or bootstrap rewrites it)
  // reaches `seq`. OK, or TimedOut when `timeout` passes first.
  Status WaitForSequence(uint64_t seq, std::chrono::milliseconds timeout) const;

  // For reads; valid while the Follower lives.
  rocksdb::DB* db();
  // A replicated column family by the master's name, or null if there is none yet.
  rocksdb::ColumnFamilyHandle* column_family(std::string_view name) const;
  // The replica's merkle tree as of its last applied write.
  TreeView tree() const;
  // The port it serves followers of its own on (FollowerOptions::relay); 0: none.
  uint16_t port() const { return relay_ ? relay_->port() : 0; }
  // Checks the tree against the replica's data now; where they differ, the
  // tree is corrected and the master asked for a diff, which repairs the
  // data. OK with result->mismatches == 0: the tree equals the data. One
  // audit runs at a time; the periodic one (options.audit) calls this.
  Status Audit(AuditResult* result);

 private:
  Follower() = default;
  void MaybeClone(const FollowerOptions& options);
  static void RemoveStaleStaging(const FollowerOptions& options);
  // Called under the client's status lock, so it must not ask the client again.
  FollowerStatus Compose(const net::FollowerClientStatus& client) const;

  std::optional<CloneResult> clone_;  // set when Open copied the master's files
  std::unique_ptr<RocksFollowerStore> store_;
  std::unique_ptr<FollowerProgress> progress_;  // between client_ and store_, if reporting
  std::unique_ptr<Relay> relay_;  // takes the store's changes; stops serving before the client goes
  std::unique_ptr<net::FollowerClient> client_;
  std::unique_ptr<Auditor> auditor_;  // stopped first
};

}  // namespace sdiff::plugin
