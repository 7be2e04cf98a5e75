// What an embedder sets for a Master or a Follower, and what they report back.
// Public (include/sdiff/): flat, std-only structs; every field says its default.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace rocksdb {
class EventListener;
}  // namespace rocksdb

namespace sdiff {

// PEM file paths. All empty (the default) means plain TCP.
struct TlsOptions {
  // Our certificate chain, leaf first. A master must have one; a follower
  // gives one (with key_file) only for mutual TLS.
  std::string cert_file;
  std::string key_file;  // the private key of that leaf
  // The CA(s) the peer's certificate must chain to. On a master it turns on
  // mutual TLS; on a follower, without it the system's trust store is used.
  std::string ca_file;
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

// Progress of long work: a master's tree build at Attach (and after a gap),
// a follower's file copy, bootstrap and repairs.
struct Progress {
  enum class Kind {
    kTreeBuild,  // master: the merkle tree from a snapshot scan
    kBootstrap,  // follower: the master's snapshot streamed into an empty replica
    kRepair,     // follower: keys a diff rewrote or deleted
    kClone,      // follower: bytes of the master's files copied
  };
  Kind kind = Kind::kTreeBuild;
  uint64_t done = 0;      // keys so far (kClone: bytes)
  uint64_t total = 0;     // keys expected, 0 if unknown; for kTreeBuild RocksDB's estimate
  bool finished = false;  // the last report of this piece of work (also when it failed)
};

// Called from sdiff's own threads, one report at a time per piece of work;
// it must be quick (it may run on the thread that does the work).
using ProgressFn = std::function<void(const Progress&)>;

struct MasterOptions {
  // HOST:PORT to accept followers on; port 0 lets the OS pick (Master::port()).
  // Default: "127.0.0.1:8123".
  std::string listen = "127.0.0.1:8123";
  // The shared secret followers must prove. Empty: none, and then the master
  // listens on loopback only unless allow_unauthenticated_remote. Default: empty.
  std::string secret;
  bool allow_unauthenticated_remote = false;  // Default: false
  TlsOptions tls;                             // Default: plain TCP
  int threads = 1;  // network (io) threads; more only for many TLS followers. Default: 1
  size_t max_connections = 64;  // more are refused (the follower retries). Default: 64
  // A connection must finish its handshake within this. Default: 5 s.
  std::chrono::milliseconds handshake_timeout{5000};
  // A connection that sends nothing for this long is closed. Default: 15 s.
  std::chrono::milliseconds idle_timeout{15000};
  // Bytes queued for a follower that reads too slowly before it is
  // disconnected; it catches up when it comes back. Default: 64 MiB.
  size_t max_follower_backlog_bytes = 64 << 20;

  // How followers know this master; a follower of another id diffs rather
  // than resumes. Empty: the DB's identity (DB::GetDbIdentity). Default: empty.
  std::string master_id;
  // Without NotifyWrite, new writes are seen within this. Default: 1 ms.
  // An application that calls NotifyWrite is trusted to call it after every
  // write: while nothing is written, the master then looks at the WAL less
  // and less often, until only every 16 ms (or poll_interval, if longer), so
  // a write it forgets to notify may wait that long.
  std::chrono::milliseconds poll_interval{1};
  // Recent batches kept in memory so that a follower coming back resumes the
  // stream instead of diffing. Default: 64 MiB.
  size_t resume_window_bytes = 64 << 20;
  // An empty follower of a master with at least this many keys gets a
  // snapshot streamed (or a copy of the files, serve_files) instead of a
  // diff. Default: 10000.
  uint64_t bootstrap_min_keys = 10000;
  // Diff followers that cannot resume as soon as they connect. Default: true.
  bool diff_on_connect = true;
  // An empty follower of a master holding bootstrap_min_keys or more may copy
  // the database files instead of receiving the keys. Default: true.
  bool serve_files = true;

  // Clients in the writer role may write through this master (sdiff-ldb
  // --master put, delete, load); their batches reach the DB with DB::Write
  // and the followers through the WAL like any other write. Needs a secret
  // (Attach refuses it without one). Default: false.
  bool allow_writers = false;
  // A writer's batch is acknowledged only once it is fsynced in the master's
  // WAL, so a power loss after the ack cannot lose it. Default: false.
  bool sync_writes = false;
  // Writes through the master are refused while the database's disk has less
  // than this free; the application's own writes are its own. 0: no check.
  // Default: 256 MiB.
  uint64_t min_free_bytes = 256 << 20;
  // A writer's batch is acknowledged only once this many followers have
  // applied it; when ack_timeout passes first it stays committed and the
  // writer is told it was not replicated. 0: at once. Default: 0.
  size_t min_acks = 0;
  std::chrono::milliseconds ack_timeout{5000};  // Default: 5 s
  // Replicate families whose data RocksDB changes without a WAL record (a
  // compaction filter or filter factory, a TTL database, FIFO compaction).
  // Attach refuses them by default: followers may then hold dropped data for
  // up to audit_interval plus one audit's scan. Default: false.
  bool accept_changes_outside_wal = false;

  // The self-audit checks the master's tree against the database this often.
  // 0: only on demand (Master::Audit). Default: 1 hour.
  std::chrono::milliseconds audit_interval = std::chrono::hours(1);
  // How fast an audit reads, so that it never starves the application's
  // writes. 0: unlimited. Default: 64 MiB/s.
  uint64_t audit_max_bytes_per_second = 64 << 20;

  // Reports the tree build at Attach and after a gap. Default: none.
  ProgressFn progress;
  // From NewMasterListener() (sdiff/master.h), added to
  // rocksdb::Options::listeners before DB::Open: how the master learns of an
  // IngestExternalFile, which never shows in the WAL. Optional: without it an
  // ingested file reaches followers only once a self-audit finds it. Default: none.
  std::shared_ptr<rocksdb::EventListener> listener;
};

struct FollowerOptions {
  std::string db_path;            // the replica's RocksDB directory
  bool create_if_missing = true;  // Default: true
  // fsync each applied write. Default: false (a machine crash can lose the
  // last writes, never a part of one; the follower then resumes before them).
  bool sync_writes = false;
  // The follower stops applying while the disk holding the replica has less
  // than this free, and resumes by itself once there is room. 0: no check.
  // Default: 256 MiB.
  uint64_t min_free_bytes = 256 << 20;
  // A follower with no database yet first asks the master for a copy of its
  // files and opens that: the fastest start for a large master. When the
  // master refuses or the copy fails, it starts empty and the master
  // bootstraps or diffs it. Open blocks for the copy (or for connect_timeout
  // when the master is unreachable). Default: true.
  bool clone_files = true;
  // A file where every key a diff or bootstrap changes or deletes is first
  // appended, fsynced, with the value the replica had (one KEY<TAB>VALUE line
  // in hex; `sdiff-ldb --master=M load FILE` replays it). It also lets Open
  // take a directory holding data but no follower state (a former master, a
  // plain RocksDB), which it refuses otherwise. Default: none.
  std::string ledger;
  // Lets Open take such a directory without a ledger: the first diff
  // overwrites what only it holds. Not with `ledger`. Default: false.
  bool discard = false;

  std::string master = "127.0.0.1:8123";  // HOST:PORT. Default: "127.0.0.1:8123"
  std::string secret;                     // shared secret; empty: none. Default: empty
  TlsOptions tls;                         // Default: plain TCP
  // The name lookup and the connect together must finish within this. Default: 5 s.
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds handshake_timeout{5000};  // Default: 5 s
  // After a failure the follower reconnects, waiting backoff_initial, then
  // doubling up to backoff_max, with jitter. Default: 100 ms, 10 s.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10000};
  // A periodic anti-entropy diff while connected. 0: off. Default: 0.
  std::chrono::milliseconds repair_interval{0};

  // HOST:PORT to serve followers of this follower on (a chain: they follow
  // it as they would the master, with the master's identity and sequences);
  // port 0 lets the OS pick (Follower::port()). They must prove the same
  // secret, and with TLS this follower presents tls's certificate to them
  // (and with tls.ca_file requires theirs). Empty: none. Default: empty.
  std::string listen;
  size_t max_connections = 64;  // followers of this follower. Default: 64
  // Bytes queued for one of them that reads too slowly before it is
  // disconnected. Default: 64 MiB.
  size_t max_follower_backlog_bytes = 64 << 20;
  // Recent batches kept so that one of them coming back resumes. Default: 64 MiB.
  size_t resume_window_bytes = 64 << 20;

  // The self-audit checks the replica's tree against its data this often.
  // 0: only on demand (Follower::Audit). Default: 1 hour.
  std::chrono::milliseconds audit_interval = std::chrono::hours(1);
  // How fast an audit reads. 0: unlimited. Default: 64 MiB/s.
  uint64_t audit_max_bytes_per_second = 64 << 20;

  // Reports the file copy, bootstraps and repairs. Default: none.
  ProgressFn progress;
};

// What Master::Audit and Follower::Audit found.
struct AuditResult {
  uint64_t seq = 0;                   // the sequence the data and the tree were compared at
  uint64_t keys = 0;                  // keys scanned
  uint64_t mismatches = 0;            // keys whose tree entry differed from the data, corrected
  std::vector<std::string> examples;  // the first few of them, "family:key" escaped
  double seconds = 0;                 // how long the audit took
};

// Self-audits since start.
struct AuditStats {
  uint64_t runs = 0;         // audits finished (with or without mismatches)
  uint64_t failures = 0;     // audits that could not finish (see the log)
  uint64_t mismatches = 0;   // keys corrected, summed over every audit
  int64_t last_unix_ms = 0;  // when the last audit finished; 0: never
  double last_seconds = 0;   // how long it took
  uint64_t last_mismatches = 0;
};

// One peer connected to a master, as the master last heard of it.
struct SessionStats {
  enum class Role { kFollower, kInspector, kWriter, kCloner, kAuditor };
  std::string peer;             // HOST:PORT
  Role role = Role::kFollower;  // as the peer said (kFollower until it has)
  bool streaming = false;       // handshake done, being served
  uint64_t applied_seq = 0;     // the follower's last applied sequence
  // applied_seq once the follower is known to hold every write up to it (0
  // during its first diff after a start that could not resume, and for
  // other roles): what Master::WaitForFollowers counts.
  uint64_t acked_seq = 0;
  uint64_t lag_seqs = 0;  // MasterStatus::master_seq - applied_seq
  // How long the oldest batch the follower had not applied had been waiting,
  // as of its last report (once a second); 0 when it had applied everything.
  int64_t lag_ms = 0;
  size_t input_buffer_bytes = 0;  // memory held for the peer's unread input
};

// Master::status().
struct MasterStatus {
  uint64_t tailed_seq = 0;       // last sequence in the tree and the stream
  uint64_t db_seq = 0;           // the DB's latest sequence
  uint64_t master_seq = 0;       // what the sessions' lag_seqs is measured from
  size_t keys = 0;               // keys in the replicated families (the tree's)
  std::string root;              // the tree's root hash, 32 hex digits (as `sdiff-ldb root`)
  uint64_t rebuilds = 0;         // tree rebuilds (a WAL gap, an ingested file)
  bool rebuild_pending = false;  // a rebuild was asked for and has not finished
  size_t left_out_keys = 0;      // keys a key-hash collision keeps out of the tree
  AuditStats audit;
  size_t connections = 0;  // live sessions
  uint64_t accepted = 0;   // connections accepted
  // Connections refused (too many, failed handshake, bad secret or frame) or
  // dropped (protocol error, follower too slow to keep up).
  uint64_t rejected = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t diffs = 0;                  // complete diffs served
  uint64_t keys_repaired = 0;          // keys those diffs repaired
  std::vector<SessionStats> sessions;  // one per live connection, in no particular order
};

// Follower::status().
struct FollowerStatus {
  // How the master brought a connection up to date.
  enum class StartMode { kResume, kDiff, kBootstrap, kFiles };
  bool connected = false;    // streaming from the master
  uint64_t master_seq = 0;   // the master's newest sequence we heard of
  uint64_t applied_seq = 0;  // the last master sequence applied
  uint64_t lag_seqs = 0;     // master_seq - applied_seq
  // How long it has been behind the newest master sequence it heard of, on
  // its own clock; 0 when caught up.
  int64_t lag_ms = 0;
  uint64_t bytes_in = 0;                    // from the master, since Open
  uint64_t bytes_out = 0;                   // to the master, since Open
  int64_t last_diff_unix_ms = 0;            // end of the last complete diff; 0: none
  uint64_t last_diff_repaired = 0;          // keys the last diff repaired
  uint64_t diffs = 0;                       // complete diffs since Open
  uint64_t connects = 0;                    // successful handshakes since Open
  uint64_t reconnects = 0;                  // connection attempts after the first
  StartMode last_start = StartMode::kDiff;  // how the last connection began (connects > 0)
  std::string last_error;                   // why the last connection ended or failed
  std::string master_id;                    // whom the replica follows, as persisted
  // Keys in the replicated families, 0 until the replica's tree is built (a
  // fresh clone streams meanwhile; diffs wait for the tree).
  uint64_t keys = 0;
  bool tree_built = false;
  // Open copied the master's files (clone_files): this many bytes, holding
  // the master's data as of master sequence clone_seq.
  bool cloned = false;
  uint64_t clone_bytes = 0;
  uint64_t clone_seq = 0;
  AuditStats audit;  // the self-audits since Open
};

}  // namespace sdiff
