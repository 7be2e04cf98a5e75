// RocksFollowerStore: the follower's replica in a RocksDB database. It applies
// master batches, repairs and bootstrap chunks each in one WriteBatch together
// with the replication state, and keeps the merkle tree of the replicated data.
//
// A batch or value too large for one frame is staged (Hooks().stage) in
// RocksDB's own write batch format as its pieces arrive, and written with
// its last piece: it is held once, not also as ops.
//
// Layout: each column family the master replicates, under the master's name,
// plus one reserved family that is never replicated nor part of the tree:
//   __sdiff / "state"    -> FollowerState   (EncodeState)
//   __sdiff / "families" -> the master's families, tag -> name (EncodeFamilies)
//   __sdiff / "unreconciled" -> "" while a directory that held data of its own
//                           (no follower state) has not finished its first
//                           diff: until then it starts only with a ledger or
//                           told to discard (see unfollowed_data)
// A promoted follower's directory, now a master's (plugin/lineage.h), holds
//   __sdiff / "master"   -> MasterRecord   (EncodeMasterRecord)
// and no "state".
// Column families without a tag in that map are left alone (logged at open).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/client_session.h"
#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/server_session.h"
#include "engine/status.h"
#include "net/follower_client.h"
#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "plugin/audit.h"
#include "plugin/disk_reserve.h"
#include "plugin/ledger.h"
#include "plugin/replica_options.h"
#include "plugin/tree_scan.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
class Env;
class Snapshot;
class WriteBatch;
}  // namespace rocksdb

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

// The reserved column family holding the follower's own metadata, and its
// keys (see the layout above); sdiff::ReplicaReader reads the state too.
inline constexpr std::string_view kMetaFamily = "__sdiff";
inline constexpr char kStateKey[] = "state";
inline constexpr char kFamiliesKey[] = "families";
inline constexpr char kUnreconciledKey[] = "unreconciled";
inline constexpr char kMasterKey[] = "master";

// A master's identity and lineage, as a promoted follower records them
// (plugin/lineage.h): the identity it serves under, and the earlier
// identities whose followers may resume on it.
struct MasterRecord {
  std::string master_id;
  std::vector<LineageLink> lineage;
  friend bool operator==(const MasterRecord&, const MasterRecord&) = default;
};

// What a follower does with a directory that holds data but no follower
// state (a former master, a promoted follower's, or any plain RocksDB): a
// diff would overwrite or delete what only it holds.
enum class UnfollowedData {
  kRefuse,   // Open fails (InvalidArgument) and touches nothing
  kLedger,   // follow, recording what repairs overwrite in the ledger
  kDiscard,  // follow, letting repairs overwrite it
};

struct RocksFollowerStoreOptions {
  std::string db_path;
  // Create the database if the directory holds none. Default: true.
  bool create_if_missing = true;
  // fsync every applied write. Default: false: a machine crash may lose the
  // last writes, but the state written with them goes too, so the follower
  // resumes from before them and never skips anything.
  bool sync_writes = false;
  // Testing seam: the Env the database is opened with. Default: RocksDB's.
  rocksdb::Env* env = nullptr;
  // The RocksDB options the database opens with and its families are created
  // with; create_if_missing and env above win over rocks.db's. Default: RocksDB's.
  ReplicaRocksOptions rocks;
  std::shared_ptr<spdlog::logger> logger;  // default: spdlog's default logger
  // Testing seam: called before each write; a non-OK result fails that write
  // as a failing disk would. Default: none.
  std::function<Status()> fail_before_write;
  // Testing seam: see FollowerOptions::before_tree_built.
  std::function<void()> before_tree_built;
  // The follower stops applying while the disk holding its database has less
  // than this free, plus twice the write in hand: RocksDB's own handling of a
  // full disk (7.8, as Debian builds it) can abort the process on the write
  // after a failed one. Applying resumes by itself once there is room (the
  // client reconnects, backing off). 0: no check. Default: 256 MiB.
  uint64_t min_free_bytes = 256 << 20;
  // Testing seam: the free bytes on the disk holding `path`. Default:
  // std::filesystem::space's `available`.
  std::function<uint64_t(const std::string& path)> free_bytes;
  // Open leaves the tree empty and Prepare() starts building it from a
  // snapshot on a thread of its own, while the client connects and streams
  // (a freshly cloned replica: readable at once, streaming without waiting
  // for its tree). Writes meanwhile are kept and applied to the built tree.
  // A diff waits for it. A store with a relay (set_on_change) builds it in
  // Prepare, before connecting, since its followers are served from it.
  // Default: false (Open builds it).
  bool defer_tree = false;
  // Testing seam: how the tree hashes keys, to force key-hash collisions.
  // Master and followers must agree. Default: KeyHash (docs/protocol.md).
  KeyHasher key_hasher = &KeyHash;
  // A file where every key a repair or bootstrap changes or deletes is first
  // written with the value it had (plugin/ledger.h). Empty: none. Default: none.
  std::string ledger_path;
  // See UnfollowedData. A ledger_path makes kRefuse kLedger. Default: kRefuse.
  UnfollowedData unfollowed_data = UnfollowedData::kRefuse;
};

// What changed the store's tree, for a relay (plugin/relay.h) that serves the
// replica to followers of its own. Valid during the call only.
struct StoreChange {
  // kStream: master batches applied from the stream (ops, stream_seq); kOther:
  // anything else that changed the tree or the state (a repair, a bootstrap
  // chunk, the state alone, the tree built or re-tagged).
  enum class Kind { kStream, kOther };
  Kind kind = Kind::kOther;
  const std::vector<Op>* ops = nullptr;  // kStream: the write's ops, in order
  uint64_t stream_seq = 0;               // kStream: the first sequence they carry
  uint64_t position = 0;                 // the stream position after the change (0: none)
  FollowerState state;                   // as persisted with it
  TreeView tree;                         // the tree after it
  bool tree_built = false;               // false: the tree is not built yet (empty)
};
using StoreChangeFn = std::function<void(const StoreChange&)>;

class RocksFollowerStore : public FollowerStore {
 public:
  // Opens (or creates) the database with all its column families, reads the
  // replication state and rebuilds the tree from the data.
  static Status Open(RocksFollowerStoreOptions options, std::unique_ptr<RocksFollowerStore>* out);
  ~RocksFollowerStore() override;  // closes the database
  RocksFollowerStore(const RocksFollowerStore&) = delete;
  RocksFollowerStore& operator=(const RocksFollowerStore&) = delete;

  // Hooks and State() are for the follower client's thread; the accessors
  // below may be called from any thread.
  FollowerHooks Hooks() override;
  FollowerState State() override;
  Status Prepare() override;  // starts building the tree if Open deferred it
  // Stops a tree being built behind the stream and releases whoever waits
  // for it (they get the tree as it is): called before the client stops, so
  // that its thread, if a diff waits for the tree, ends at once.
  void StopBuildingTree();

  // For reads. Valid until the store is destroyed.
  rocksdb::DB* db() const { return db_.get(); }
  // The handle of a replicated column family by name, or null. Valid until the
  // store is destroyed.
  rocksdb::ColumnFamilyHandle* family(std::string_view name) const;
  // The master's families as last recorded, ascending tags.
  std::vector<FamilyInfo> families() const;
  // As of the last applied write; empty while the tree is being built
  // (tree_built() false).
  TreeView tree() const;
  bool tree_built() const;
  uint64_t keys() const;  // the tree's: 0 until it is built
  // Checks the tree against the replica's data (plugin/audit.h): scans a
  // snapshot taken together with a view of the tree, and corrects the tree
  // for every key that still differs. The caller then has the master diff,
  // which repairs the data. Any thread; writes go on during the scan.
  Status Audit(const TreeScanOptions& scan, AuditResult* result);

  // A relay's. Called after every change of the tree or state (StoreChange),
  // on the client's thread, outside the store's lock. Set it before the
  // client starts.
  void set_on_change(StoreChangeFn fn) { on_change_ = std::move(fn); }
  // The tree, the stream position and the state as of the last change, together.
  StoreChange Current() const;
  // A snapshot of the database for a bootstrap scan, taken under the lock
  // every write takes, and in *position the master sequence it stands at.
  // The caller releases it with db()->ReleaseSnapshot.
  const rocksdb::Snapshot* SnapshotAtPosition(uint64_t* position) const;
  // The replicated families with their tags, ascending.
  TaggedFamilies tagged_families() const;

 private:
  class StagedBatch;
  explicit RocksFollowerStore(RocksFollowerStoreOptions options);
  Status OpenDb();
  // Refuses a directory holding data but no follower state, unless told
  // what to do with its data; then marks it unreconciled.
  Status ClaimDirectory(bool existed);
  Status LoadMeta();
  // What the repair or bootstrap write `request` overwrites, for the ledger.
  Status LedgerEntries(const ApplyRequest& request, std::vector<LedgerEntry>* out) REQUIRES(mu_);
  // Rebuilds the tree from a snapshot of every tagged family.
  Status RebuildTree() REQUIRES(mu_);
  // Reads `families` as of `snapshot` (null: a snapshot of its own) into *tree.
  Status BuildTree(const std::map<FamilyTag, rocksdb::ColumnFamilyHandle*>& families,
                   const rocksdb::Snapshot* snapshot, const TreeScanOptions& scan,
                   MerkleTree* tree) const;
  Status TakeFamilies(const std::vector<FamilyInfo>& families);
  Status Write(const ApplyRequest& request);
  // The write itself: the database, then the state and the tree; *written
  // once the database has it.
  Status WriteLocked(const ApplyRequest& request, StagedWrite* staged, rocksdb::WriteBatch* batch,
                     bool* written) REQUIRES(mu_);
  // Tells on_change_ (if set) of the tree and state as they are (Current()).
  void TellChanged();
  // builder_'s: scans `snapshot` into a tree until it succeeds or the store
  // closes, then applies pending_ to it and makes it the store's.
  void BuildBehind(const rocksdb::Snapshot* snapshot,
                   std::map<FamilyTag, rocksdb::ColumnFamilyHandle*> families, KeyHasher hasher);
  // The tree once built (or, while the store closes, as it is).
  TreeView BuiltTree() const;
  // Waits while builder_ builds the tree.
  void WaitWhileBuilding() const REQUIRES(mu_);
  // The keys held, for the Hello: while the tree is being built, RocksDB's
  // estimate (an empty follower is bootstrapped, a cloned one must not be).
  uint64_t KeysHeld() const;
  // The handle of a family the master announced, or an error naming it.
  Status Handle(FamilyTag family, rocksdb::ColumnFamilyHandle** handle) const REQUIRES(mu_);

  RocksFollowerStoreOptions options_;  // constant after construction
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<rocksdb::DB> db_;  // set once by Open
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;

  mutable net::Mutex mu_;
  // Every open handle but meta_, by name; handles live until the store closes.
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> handles_ GUARDED_BY(mu_);
  std::map<FamilyTag, std::string> families_ GUARDED_BY(mu_);
  std::map<FamilyTag, rocksdb::ColumnFamilyHandle*> by_tag_ GUARDED_BY(mu_);
  FollowerState state_ GUARDED_BY(mu_);
  DiskReserve reserve_;  // see min_free_bytes
  MerkleTree tree_ GUARDED_BY(mu_);
  bool tree_built_ GUARDED_BY(mu_) = false;
  // A tree being built behind the stream (defer_tree), and the changes written
  // since its snapshot, in order, for it.
  struct PendingChange {
    bool put = false;
    FamilyTag family = 0;
    std::string key;
    Hash128 leaf_hash;
  };
  bool building_ GUARDED_BY(mu_) = false;
  std::vector<PendingChange> pending_ GUARDED_BY(mu_);
  mutable net::CondVar built_{&mu_};  // building_ ended, or closing_ set
  std::atomic<bool> closing_{false};  // the destructor stops builder_
  std::thread builder_;               // started by Prepare, joined by the destructor
  // The stream position of the last write (ApplyRequest::position); at open,
  // the persisted applied_seq.
  uint64_t position_ GUARDED_BY(mu_) = 0;
  StoreChangeFn on_change_;         // set before the client starts; called on its thread
  std::unique_ptr<Ledger> ledger_;  // set by Open when asked for; used under mu_
  // The replicated families held data when the store opened: a key a repair
  // adds is then recorded as absent (an empty replica lost nothing).
  bool held_data_ = false;                     // constant after Open
  bool unreconciled_ GUARDED_BY(mu_) = false;  // kUnreconciledKey is set
};

// Marks a database copied from the master's files (plugin/clone.h) as a
// replica of `master_id` as of the copy's latest sequence, which is returned
// in *seq: opens it (with `rocks`, as the store will), adds the metadata
// family, records the state and the master's families (fsynced), and closes
// it. Fails if the copy holds a column family the master does not replicate.
Status AdoptClone(const std::string& path, const std::string& master_id,
                  const std::vector<FamilyInfo>& families, const ReplicaRocksOptions& rocks,
                  uint64_t* seq);

// Reads the record `key` of sdiff's family `meta` (null: the database has
// none) into *value; empty when it is not there.
Status ReadMetaRecord(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta, const char* key,
                      std::optional<std::string>* value);

// The metadata encodings, a version byte first. Integers are little-endian
// fixed width; strings are a u32 length and the bytes.
//   state v1:    u8 1, str master_id, u64 applied_seq, u8 bootstrapping,
//                u16 bootstrap_family, str bootstrap_key
//   families v1: u8 1, u32 count, count x (u16 tag, str name)
std::string EncodeState(const FollowerState& state);
Status DecodeState(std::string_view bytes, FollowerState* state);
//   master v1:   u8 1, str master_id, u32 count,
//                count x (str master_id, u64 master_seq, u64 seq)
std::string EncodeFamilies(const std::map<FamilyTag, std::string>& families);
Status DecodeFamilies(std::string_view bytes, std::map<FamilyTag, std::string>* families);
std::string EncodeMasterRecord(const MasterRecord& record);
Status DecodeMasterRecord(std::string_view bytes, MasterRecord* record);

}  // namespace sdiff::plugin
