// The follower's RocksDB replica: opening, the metadata family, and the hooks
// that apply master writes atomically with the replication state.
#include "plugin/follower_store.h"

#include <fmt/format.h>
#include <pthread.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <system_error>
#include <utility>

#include "net/secure_random.h"
#include "plugin/rocks_status.h"
#include "plugin/tree_prefetch.h"
#include "plugin/tree_scan.h"
#include "plugin/write_batch_op.h"

namespace sdiff::plugin {
namespace {

constexpr uint8_t kStateVersion = 1;
constexpr uint8_t kFamiliesVersion = 1;
constexpr uint8_t kMasterVersion = 1;

void PutFixed(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutString(std::string* out, std::string_view s) {
  PutFixed(out, s.size(), 4);
  out->append(s);
}

// Consumes from the front of a string_view; every read fails cleanly at the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool Fixed(int bytes, uint64_t* v) {
    if (in_.size() < static_cast<size_t>(bytes)) return false;
    *v = 0;
    for (int i = 0; i < bytes; ++i) *v |= uint64_t{static_cast<uint8_t>(in_[i])} << (8 * i);
    in_.remove_prefix(bytes);
    return true;
  }
  bool String(std::string* s) {
    uint64_t n = 0;
    if (!Fixed(4, &n) || in_.size() < n) return false;
    s->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

// Calls `fn` with each key on disk in [range.key, range.value) of `handle`,
// and its value.
Status ForEachCovered(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* handle, const Op& range,
                      const std::function<void(const rocksdb::Slice&, const rocksdb::Slice&)>& fn) {
  rocksdb::Slice upper(range.value);
  rocksdb::ReadOptions read;
  read.iterate_upper_bound = &upper;
  read.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> iter(db->NewIterator(read, handle));
  for (iter->Seek(range.key); iter->Valid(); iter->Next()) fn(iter->key(), iter->value());
  if (!iter->status().ok()) return FromRocks(iter->status(), "cannot scan a deleted range");
  return Status::OK();
}

// A range delete that covers nothing: its end is not after its start. The
// follower skips it (the master never streams a reversed one).
bool IsEmptyRange(const Op& op) { return op.kind == OpKind::kDeleteRange && !(op.key < op.value); }

// Adds to *changes the deletes that `range` makes: of each key this batch put
// earlier in the range, then of each key on disk in it (its Change keeps the
// key as `keep` returns it).
template <typename Change, typename KeepKey>
Status AddCoveredDeletes(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* handle, const Op& range,
                         std::vector<Change>* changes, const KeepKey& keep) {
  auto in_range = [&](std::string_view key) {
    return key.compare(range.key) >= 0 && key.compare(range.value) < 0;
  };
  size_t before = changes->size();
  for (size_t i = 0; i < before; ++i) {
    const Change& c = (*changes)[i];
    if (c.put && c.family == range.family && in_range(c.key)) {
      changes->push_back({false, range.family, c.key, {}});
    }
  }
  return ForEachCovered(db, handle, range, [&](const rocksdb::Slice& key, const rocksdb::Slice&) {
    changes->push_back({false, range.family, keep(key), {}});
  });
}

// What an applied write does to the tree, replayed in order once the write is durable.
struct TreeChange {
  bool put;
  FamilyTag family;
  std::string_view key;    // points into the request's ops, or a key a range delete found
  std::string_view value;  // puts: points into the request's ops
};

}  // namespace

std::string EncodeState(const FollowerState& state) {
  std::string out;
  out.push_back(static_cast<char>(kStateVersion));
  PutString(&out, state.master_id);
  PutFixed(&out, state.applied_seq, 8);
  out.push_back(state.bootstrapping ? 1 : 0);
  PutFixed(&out, state.bootstrap_family, 2);
  PutString(&out, state.bootstrap_key);
  return out;
}

Status DecodeState(std::string_view bytes, FollowerState* state) {
  Reader r(bytes);
  uint64_t version = 0, seq = 0, bootstrapping = 0, family = 0;
  FollowerState s;
  if (!r.Fixed(1, &version)) return Status::Corruption("follower state: empty");
  if (version != kStateVersion) {
    return Status::Corruption("follower state: unknown version " + std::to_string(version));
  }
  if (!r.String(&s.master_id) || !r.Fixed(8, &seq) || !r.Fixed(1, &bootstrapping) ||
      !r.Fixed(2, &family) || !r.String(&s.bootstrap_key) || !r.done() || bootstrapping > 1) {
    return Status::Corruption("follower state: malformed record");
  }
  s.applied_seq = seq;
  s.bootstrapping = bootstrapping == 1;
  s.bootstrap_family = static_cast<FamilyTag>(family);
  *state = std::move(s);
  return Status::OK();
}

std::string EncodeFamilies(const std::map<FamilyTag, std::string>& families) {
  std::string out;
  out.push_back(static_cast<char>(kFamiliesVersion));
  PutFixed(&out, families.size(), 4);
  for (const auto& [tag, name] : families) {
    PutFixed(&out, tag, 2);
    PutString(&out, name);
  }
  return out;
}

Status DecodeFamilies(std::string_view bytes, std::map<FamilyTag, std::string>* families) {
  Reader r(bytes);
  uint64_t version = 0, count = 0;
  if (!r.Fixed(1, &version)) return Status::Corruption("family map: empty");
  if (version != kFamiliesVersion) {
    return Status::Corruption("family map: unknown version " + std::to_string(version));
  }
  if (!r.Fixed(4, &count)) return Status::Corruption("family map: malformed record");
  std::map<FamilyTag, std::string> out;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t tag = 0;
    std::string name;
    if (!r.Fixed(2, &tag) || !r.String(&name)) {
      return Status::Corruption("family map: malformed record");
    }
    out[static_cast<FamilyTag>(tag)] = std::move(name);
  }
  if (!r.done()) return Status::Corruption("family map: trailing bytes");
  *families = std::move(out);
  return Status::OK();
}

std::string EncodeMasterRecord(const MasterRecord& record) {
  std::string out;
  out.push_back(static_cast<char>(kMasterVersion));
  PutString(&out, record.master_id);
  PutFixed(&out, record.lineage.size(), 4);
  for (const LineageLink& link : record.lineage) {
    PutString(&out, link.master_id);
    PutFixed(&out, link.master_seq, 8);
    PutFixed(&out, link.seq, 8);
  }
  return out;
}

Status DecodeMasterRecord(std::string_view bytes, MasterRecord* record) {
  Reader r(bytes);
  uint64_t version = 0, count = 0;
  MasterRecord out;
  if (!r.Fixed(1, &version)) return Status::Corruption("master record: empty");
  if (version != kMasterVersion) {
    return Status::Corruption("master record: unknown version " + std::to_string(version));
  }
  if (!r.String(&out.master_id) || !r.Fixed(4, &count)) {
    return Status::Corruption("master record: malformed record");
  }
  for (uint64_t i = 0; i < count; ++i) {
    LineageLink link;
    if (!r.String(&link.master_id) || !r.Fixed(8, &link.master_seq) || !r.Fixed(8, &link.seq)) {
      return Status::Corruption("master record: malformed lineage");
    }
    out.lineage.push_back(std::move(link));
  }
  if (!r.done() || out.master_id.empty())
    return Status::Corruption("master record: malformed record");
  *record = std::move(out);
  return Status::OK();
}

namespace {

// The master's announced families as tag -> name, refusing a name this
// follower reserves and a tag or name given twice.
Status FamilyMap(const std::vector<FamilyInfo>& families, std::map<FamilyTag, std::string>* out) {
  std::set<std::string_view> names;
  for (const FamilyInfo& f : families) {
    if (f.name.empty() || f.name == kMetaFamily) {
      return Status::InvalidArgument("the master replicates a column family named '" + f.name +
                                     "', which this follower reserves");
    }
    if (!out->emplace(f.tag, f.name).second || !names.insert(f.name).second) {
      return Status::InvalidArgument("the master's column family map repeats tag " +
                                     std::to_string(f.tag) + " or name '" + f.name + "'");
    }
  }
  return Status::OK();
}

// The options a replica opens with: the caller's, and on top what the store
// needs: every family it names created, and the Env seam.
rocksdb::DBOptions ReplicaDbOptions(const ReplicaRocksOptions& rocks, bool create_if_missing,
                                    rocksdb::Env* env) {
  rocksdb::DBOptions o = rocks.db;
  o.create_if_missing = create_if_missing;
  o.create_missing_column_families = true;
  if (env != nullptr) o.env = env;
  return o;
}

// sdiff's own family keeps RocksDB's defaults: the store's metadata must not
// go through a compaction filter or a TTL of the caller's.
rocksdb::ColumnFamilyOptions ReplicaFamilyOptions(const ReplicaRocksOptions& rocks,
                                                  std::string_view name) {
  if (name == kMetaFamily) return rocksdb::ColumnFamilyOptions();
  return rocks.ForFamily(name);
}

}  // namespace

Status AdoptClone(const std::string& path, const std::string& master_id,
                  const std::vector<FamilyInfo>& families, const ReplicaRocksOptions& rocks,
                  uint64_t* seq) {
  std::map<FamilyTag, std::string> map;
  Status s = FamilyMap(families, &map);
  if (!s.ok()) return s;
  std::set<std::string> replicated;
  for (const auto& [tag, name] : map) replicated.insert(name);
  const rocksdb::DBOptions db_options = ReplicaDbOptions(rocks, false, nullptr);
  std::vector<std::string> names;
  rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!rs.ok()) return FromRocks(rs, "cannot list the column families of the copy in " + path);
  for (const std::string& name : names) {
    if (replicated.count(name) == 0) {
      return Status::InvalidArgument("the copy holds column family '" + name +
                                     "', which the master does not replicate");
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : replicated) {
    descriptors.emplace_back(name, ReplicaFamilyOptions(rocks, name));
  }
  if (replicated.count(rocksdb::kDefaultColumnFamilyName) == 0) {
    descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName,
                             ReplicaFamilyOptions(rocks, rocksdb::kDefaultColumnFamilyName));
  }
  descriptors.emplace_back(std::string(kMetaFamily), ReplicaFamilyOptions(rocks, kMetaFamily));
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rs = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw);
  if (!rs.ok()) return FromRocks(rs, "cannot open the copy in " + path);
  std::unique_ptr<rocksdb::DB> db(raw);
  FollowerState state;
  state.master_id = master_id;
  state.applied_seq = db->GetLatestSequenceNumber();
  rocksdb::WriteBatch batch;
  rocksdb::ColumnFamilyHandle* meta = handles.back();
  rs = batch.Put(meta, kStateKey, EncodeState(state));
  if (rs.ok()) rs = batch.Put(meta, kFamiliesKey, EncodeFamilies(map));
  rocksdb::WriteOptions write;
  write.sync = true;
  if (rs.ok()) rs = db->Write(write, &batch);
  for (rocksdb::ColumnFamilyHandle* handle : handles) db->DestroyColumnFamilyHandle(handle);
  rocksdb::Status closed = db->Close();
  if (!rs.ok()) return FromRocks(rs, "cannot record the follower state in " + path);
  if (!closed.ok()) return FromRocks(closed, "cannot close the copy in " + path);
  *seq = state.applied_seq;
  return Status::OK();
}

RocksFollowerStore::RocksFollowerStore(RocksFollowerStoreOptions options)
    : options_(std::move(options)),
      log_(options_.logger ? options_.logger : spdlog::default_logger()),
      reserve_(DiskReserveOptions{options_.db_path, options_.min_free_bytes, "the follower",
                                  "stops applying", options_.free_bytes, log_}),
      tree_(options_.key_hasher) {}

Status RocksFollowerStore::Open(RocksFollowerStoreOptions options,
                                std::unique_ptr<RocksFollowerStore>* out) {
  std::unique_ptr<RocksFollowerStore> store(new RocksFollowerStore(std::move(options)));
  Status s;
  if (!store->options_.ledger_path.empty()) {
    store->options_.unfollowed_data = UnfollowedData::kLedger;
    s = Ledger::Open(store->options_.ledger_path, &store->ledger_);
    if (!s.ok()) return s;
  }
  s = store->OpenDb();
  if (!s.ok()) return s;
  s = store->LoadMeta();
  if (!s.ok()) return s;
  if (!store->options_.defer_tree) {
    s = store->Prepare();
    if (!s.ok()) return s;
  }
  *out = std::move(store);
  return Status::OK();
}

void RocksFollowerStore::StopBuildingTree() {
  closing_ = true;
  net::MutexLock lock(&mu_);
  built_.SignalAll();
}

RocksFollowerStore::~RocksFollowerStore() {
  StopBuildingTree();
  if (builder_.joinable()) builder_.join();  // its scan stops within about a MiB
  if (!db_) return;
  net::MutexLock lock(&mu_);
  for (auto& [name, handle] : handles_) db_->DestroyColumnFamilyHandle(handle);
  if (meta_ != nullptr) db_->DestroyColumnFamilyHandle(meta_);
  rocksdb::Status s = db_->Close();
  if (!s.ok()) log_->warn("closing {}: {}", options_.db_path, s.ToString());
  db_.reset();
}

// Checks the path before RocksDB does, so each way it can be wrong gets a
// one-line message naming it.
Status RocksFollowerStore::OpenDb() {
  namespace fs = std::filesystem;
  const std::string& path = options_.db_path;
  if (path.empty()) return Status::InvalidArgument("no database path given");
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  bool exists = fs::exists(st);
  if (exists && !fs::is_directory(st)) {
    return Status::InvalidArgument(path + " is not a RocksDB database: not a directory");
  }
  bool has_db = exists && fs::exists(fs::path(path) / "CURRENT", ec);
  if (!has_db) {
    bool empty = !exists || fs::is_empty(path, ec);
    if (!empty) {
      return Status::InvalidArgument(path +
                                     " is not a RocksDB database: a non-empty directory without "
                                     "a CURRENT file");
    }
    if (!options_.create_if_missing) {
      return Status::NotFound("no database at " + path + " (create_if_missing is false)");
    }
  }

  const rocksdb::DBOptions db_options =
      ReplicaDbOptions(options_.rocks, options_.create_if_missing, options_.env);
  std::vector<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  if (has_db) {
    rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
    if (!rs.ok()) return FromRocks(rs, "cannot list the column families of " + path);
  }
  // A database without our family is created with it; an existing one gets
  // it only once ClaimDirectory has accepted it, so a refusal adds nothing.
  const bool has_meta = std::find(names.begin(), names.end(), kMetaFamily) != names.end();
  if (!has_db && !has_meta) names.emplace_back(kMetaFamily);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, ReplicaFamilyOptions(options_.rocks, name));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status rs = rocksdb::DB::Open(db_options, path, descriptors, &handles, &db);
  if (!rs.ok()) {
    if (IsLockHeld(rs)) {
      return Status::IOError(path + " is locked: another process or Follower has it open (" +
                             rs.ToString() + ")");
    }
    return FromRocks(rs, "cannot open RocksDB at " + path);
  }
  db_.reset(db);
  {
    net::MutexLock lock(&mu_);
    for (size_t i = 0; i < handles.size(); ++i) {
      if (names[i] == kMetaFamily) {
        meta_ = handles[i];
      } else {
        handles_[names[i]] = handles[i];
      }
    }
  }
  return ClaimDirectory(has_db);
}

namespace {

// Whether any family but ours holds a key.
Status HoldsData(rocksdb::DB* db,
                 const std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>>& handles,
                 bool* out) {
  *out = false;
  for (const auto& [name, handle] : handles) {
    rocksdb::ReadOptions read;
    read.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, handle));
    it->SeekToFirst();
    if (!it->status().ok()) return FromRocks(it->status(), "cannot read column family " + name);
    if (it->Valid()) {
      *out = true;
      return Status::OK();
    }
  }
  return Status::OK();
}

}  // namespace

Status RocksFollowerStore::ClaimDirectory(bool existed) {
  const std::string& path = options_.db_path;
  std::optional<std::string> state, unreconciled, master;
  Status s = ReadMetaRecord(db_.get(), meta_, kStateKey, &state);
  if (s.ok()) s = ReadMetaRecord(db_.get(), meta_, kUnreconciledKey, &unreconciled);
  if (s.ok()) s = ReadMetaRecord(db_.get(), meta_, kMasterKey, &master);
  if (!s.ok()) return s;
  {
    net::MutexLock lock(&mu_);
    if (existed) s = HoldsData(db_.get(), handles_, &held_data_);
    unreconciled_ = unreconciled.has_value();
  }
  if (!s.ok()) return s;
  const UnfollowedData what = options_.unfollowed_data;
  const bool unfollowed = (!state && held_data_) || unreconciled;
  if (unfollowed && what == UnfollowedData::kRefuse) {
    std::string was;
    MasterRecord record;
    if (unreconciled) {
      return Status::InvalidArgument(
          path +
          " held data of its own and has not finished its first diff with a master; "
          "start it again with a ledger (--ledger=FILE) or --discard");
    }
    if (master && DecodeMasterRecord(*master, &record).ok()) {
      was = "a master's (promoted, identity " + record.master_id + ")";
    } else {
      was = "not a follower's (a former master, or a RocksDB of its own)";
    }
    return Status::InvalidArgument(
        path + " holds data but no follower state: it is " + was +
        "; following a master would overwrite what only it holds. Start it with a ledger "
        "(--ledger=FILE) to record what is overwritten, or with --discard");
  }
  if (meta_ == nullptr) {
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    rocksdb::Status rs = db_->CreateColumnFamily(ReplicaFamilyOptions(options_.rocks, kMetaFamily),
                                                 std::string(kMetaFamily), &handle);
    if (!rs.ok()) return FromRocks(rs, "cannot create sdiff's column family in " + path);
    meta_ = handle;
  }
  if (!unfollowed || unreconciled) return Status::OK();
  // From here until its first diff completes, the directory keeps needing a
  // ledger or --discard, whatever happens meanwhile; and it is no master now.
  rocksdb::WriteBatch batch;
  rocksdb::Status rs = batch.Put(meta_, kUnreconciledKey, "");
  if (rs.ok()) rs = batch.Delete(meta_, kMasterKey);
  rocksdb::WriteOptions write;
  write.sync = true;
  if (rs.ok()) rs = db_->Write(write, &batch);
  if (!rs.ok()) return FromRocks(rs, "cannot record that " + path + " is being reconciled");
  {
    net::MutexLock lock(&mu_);
    unreconciled_ = true;
  }
  if (what == UnfollowedData::kLedger) {
    log_->warn("{} holds data but no follower state: what repairs overwrite goes to the ledger {}",
               path, ledger_->path());
  } else {
    log_->warn("{} holds data but no follower state: repairs will overwrite it (--discard)", path);
  }
  return Status::OK();
}

Status RocksFollowerStore::LoadMeta() {
  std::string bytes;
  FollowerState state;
  rocksdb::Status rs = db_->Get(rocksdb::ReadOptions(), meta_, kStateKey, &bytes);
  if (rs.ok()) {
    // The state only decides whether we may resume; without it the master
    // diffs us, which repairs everything, so damage here costs a diff, not the replica.
    Status s = DecodeState(bytes, &state);
    if (!s.ok()) {
      log_->warn("{}: {}; the master will diff this replica", options_.db_path, s.message());
      state = FollowerState();
    }
  } else if (!rs.IsNotFound()) {
    return FromRocks(rs, "cannot read the follower state in " + options_.db_path);
  }
  std::map<FamilyTag, std::string> families;
  rs = db_->Get(rocksdb::ReadOptions(), meta_, kFamiliesKey, &bytes);
  if (rs.ok()) {
    Status s = DecodeFamilies(bytes, &families);
    if (!s.ok()) {  // the master announces its families again at Welcome
      log_->warn("{}: {}; waiting for the master's", options_.db_path, s.message());
      families.clear();
    }
  } else if (!rs.IsNotFound()) {
    return FromRocks(rs, "cannot read the family map in " + options_.db_path);
  }

  net::MutexLock lock(&mu_);
  position_ = state.applied_seq;
  if (families.empty() && held_data_) {
    // A directory of its own (a former master): the master names its
    // families only in its Welcome. Tag ours for now, so that the tree, and
    // the key count the Hello reports, show the data held here (a follower
    // that says it is empty is bootstrapped: sent every key); the Welcome's
    // map replaces these tags, rebuilding the tree if they differ.
    FamilyTag tag = 0;
    for (const auto& [name, handle] : handles_) families[tag++] = name;
  }
  state_ = std::move(state);
  families_ = std::move(families);
  by_tag_.clear();
  std::set<std::string_view> tagged;
  for (const auto& [tag, name] : families_) {
    tagged.insert(name);
    auto it = handles_.find(name);
    if (it != handles_.end()) by_tag_[tag] = it->second;
  }
  for (const auto& [name, handle] : handles_) {
    if (tagged.count(name) == 0 && !families_.empty()) {
      log_->warn("{}: column family '{}' is not one the master replicates; leaving it alone",
                 options_.db_path, name);
    }
  }
  return Status::OK();
}

Status RocksFollowerStore::RebuildTree() {
  WaitWhileBuilding();  // then rebuilt with the new tags
  MerkleTree tree(tree_.hasher());
  Status s = BuildTree(by_tag_, /*snapshot=*/nullptr, TreeScanOptions(), &tree);
  if (!s.ok()) return s;
  tree_ = std::move(tree);
  return Status::OK();
}

Status RocksFollowerStore::BuildTree(
    const std::map<FamilyTag, rocksdb::ColumnFamilyHandle*>& families,
    const rocksdb::Snapshot* snapshot, const TreeScanOptions& scan, MerkleTree* tree) const {
  const rocksdb::Snapshot* own = snapshot == nullptr ? db_->GetSnapshot() : nullptr;
  Status result = ScanIntoTree(db_.get(), own != nullptr ? own : snapshot,
                               TaggedFamilies(families.begin(), families.end()), scan, tree);
  if (own != nullptr) db_->ReleaseSnapshot(own);
  return result;
}

Status RocksFollowerStore::Audit(const TreeScanOptions& scan, AuditResult* result) {
  TreeView tree;
  TaggedFamilies families;
  const rocksdb::Snapshot* snapshot = nullptr;
  {
    // Every write takes mu_ for the database and the tree together, so a
    // snapshot and a view taken under it show the same position.
    net::MutexLock lock(&mu_);
    if (!tree_built_) return Status::Aborted("the replica's tree is not built yet");
    tree = tree_.Snapshot();
    snapshot = db_->GetSnapshot();
    result->seq = state_.applied_seq;
    for (const auto& [tag, handle] : by_tag_) families.emplace_back(tag, handle);
  }
  std::vector<DiffEntry> differing;
  Status s =
      FindTreeMismatches(db_.get(), snapshot, families, tree, scan, &differing, &result->keys);
  db_->ReleaseSnapshot(snapshot);
  if (!s.ok() || differing.empty()) return s;
  // Writes since the snapshot may have changed a differing key: correct the
  // tree from the data as it is now, where the two still differ.
  net::MutexLock lock(&mu_);
  for (const DiffEntry& d : differing) {
    auto handle = by_tag_.find(d.family);
    if (handle == by_tag_.end()) continue;  // the family went with a new master
    std::string value;
    rocksdb::Status rs = db_->Get(rocksdb::ReadOptions(), handle->second, d.key, &value);
    if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "cannot read a key the audit found");
    std::optional<Hash128> want;
    if (rs.ok()) want = LeafHash(tree_.hasher()(d.family, d.key), value);
    if (tree_.Find(d.family, d.key) == want) continue;
    if (rs.ok()) {
      if (!tree_.Put(d.family, d.key, value).ok()) continue;  // a key-hash collision
    } else {
      tree_.Erase(d.family, d.key);
    }
    if (++result->mismatches <= kAuditExamples) {
      result->examples.push_back(PrintableKey(families_[d.family], d.key));
    }
  }
  return Status::OK();
}

// Builds without holding mu_, so status readers are not held up: the only
// writer of the tree and the families is the client's thread, which is the
// one calling (or, from Open, no client exists yet). A deferred tree is built
// behind the stream instead (BuildBehind).
Status RocksFollowerStore::Prepare() {
  std::map<FamilyTag, rocksdb::ColumnFamilyHandle*> families;
  KeyHasher hasher;
  {
    net::MutexLock lock(&mu_);
    if (tree_built_ || building_) return Status::OK();
    families = by_tag_;
    hasher = tree_.hasher();
    if (options_.defer_tree && !on_change_) {
      // Every write from now on is written after this snapshot (they all
      // take mu_) and kept in pending_ until the tree from it is built.
      building_ = true;
      pending_.clear();
      const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
      builder_ = std::thread(&RocksFollowerStore::BuildBehind, this, snapshot, std::move(families),
                             hasher);
      return Status::OK();
    }
  }
  MerkleTree tree(hasher);
  Status s = BuildTree(families, /*snapshot=*/nullptr, TreeScanOptions(), &tree);
  if (!s.ok()) return s;
  {
    net::MutexLock lock(&mu_);
    tree_ = std::move(tree);
    tree_built_ = true;
  }
  TellChanged();
  return Status::OK();
}

void RocksFollowerStore::BuildBehind(const rocksdb::Snapshot* snapshot,
                                     std::map<FamilyTag, rocksdb::ColumnFamilyHandle*> families,
                                     KeyHasher hasher) {
  pthread_setname_np(pthread_self(), "sdiff-tree");  // as top -H and perf show it
  const auto start = std::chrono::steady_clock::now();
  TreeScanOptions scan;
  scan.cancel = &closing_;
  MerkleTree tree(hasher);
  for (;;) {
    Status s = BuildTree(families, snapshot, scan, &tree);
    if (s.ok() || closing_) break;
    // As a failed Prepare is: logged and tried again, while a diff waits.
    log_->error("{}: cannot build the replica's tree: {}; trying again in a second",
                options_.db_path, s.ToString());
    tree.Clear();
    net::MutexLock lock(&mu_);
    if (!closing_) built_.WaitUntil(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  }
  db_->ReleaseSnapshot(snapshot);
  if (options_.before_tree_built && !closing_) options_.before_tree_built();
  // The writes made meanwhile, oldest first, grouped with their paths
  // prefetched as every apply is. While many remain they are taken in
  // rounds and applied outside the lock (the tree is this thread's alone),
  // so that the stream's writes and status readers wait only for the last few.
  auto apply = [&tree](const std::vector<PendingChange>& changes) {
    for (size_t i = 0; i < changes.size(); ++i) {
      PrefetchGroupAt(tree, changes, i, [](const PendingChange& c) {
        return std::optional(std::pair<FamilyTag, std::string_view>(c.family, c.key));
      });
      const PendingChange& c = changes[i];
      if (c.put) {
        tree.PutLeafHash(c.family, c.key, c.leaf_hash);
      } else {
        tree.Erase(c.family, c.key);
      }
    }
  };
  constexpr size_t kAppliedUnderLock = 4096;
  constexpr int kMaxRounds = 8;  // then the rest under the lock, however many
  size_t meanwhile = 0;
  for (int round = 0; round < kMaxRounds && !closing_; ++round) {
    std::vector<PendingChange> taken;
    {
      net::MutexLock lock(&mu_);
      if (pending_.size() <= kAppliedUnderLock) break;
      taken.swap(pending_);
    }
    meanwhile += taken.size();
    apply(taken);
  }
  net::MutexLock lock(&mu_);
  meanwhile += pending_.size();
  if (!closing_) {
    apply(pending_);
    tree_ = std::move(tree);
    tree_built_ = true;
    log_->info(
        "{}: built the replica's tree behind the stream: {} keys ({} written meanwhile) in "
        "{:.2f} s",
        options_.db_path, tree_.size(), meanwhile,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  pending_.clear();
  pending_.shrink_to_fit();
  building_ = false;
  built_.SignalAll();
}

void RocksFollowerStore::WaitWhileBuilding() const {
  while (building_ && !closing_) built_.Wait();
}

TreeView RocksFollowerStore::BuiltTree() const {
  net::MutexLock lock(&mu_);
  WaitWhileBuilding();
  return tree_.Snapshot();
}

// A write arriving in pieces, kept as the records of a RocksDB write batch
// (rep_: the 12-byte header, then the records) so that its data is held once.
// Whole ops are encoded by a WriteBatch and their records appended; a large
// put's record is a WriteBatch's record for an empty value with the value's
// real length, then the value's bytes as they come (the record format is the
// WAL's, fixed by RocksDB for compatibility). The tree changes wait, with
// leaf hashes computed as the data passes, until the write is durable.
class RocksFollowerStore::StagedBatch : public StagedWrite {
 public:
  struct Change {
    bool put;
    FamilyTag family;
    std::string key;
    Hash128 leaf_hash;  // puts
  };

  StagedBatch(RocksFollowerStore* store, uint64_t expected_bytes) : store_(store) {
    // Reserved once, so that growing never holds the batch twice: the keys
    // and values, and a sixteenth for the records' own bytes (a tag and
    // lengths, up to 16 bytes an op: enough for ops of 256 bytes and more).
    // Beyond kMaxReserve (an announcement we cannot check yet) it grows as
    // it comes.
    constexpr uint64_t kMaxReserve = uint64_t{1} << 30;
    uint64_t expected = std::min(expected_bytes, kMaxReserve);
    rep_.reserve(kHeader + expected + expected / 16 + kSlack);
    rep_.assign(kHeader, '\0');
  }

  Status AddOps(std::vector<Op>& ops) override {
    if (value_left_ != 0) return Status::InvalidArgument("ops staged inside a put's value");
    net::MutexLock lock(&store_->mu_);
    rocksdb::WriteBatch records;
    for (const Op& op : ops) {
      rocksdb::ColumnFamilyHandle* handle = nullptr;
      Status s = store_->Handle(op.family, &handle);
      if (!s.ok()) return s;
      if (IsEmptyRange(op)) continue;
      rocksdb::Status rs = AddOp(op, handle, &records);
      if (!rs.ok()) return FromRocks(rs, "cannot build the write batch");
      switch (op.kind) {
        case OpKind::kPut:
          changes_.push_back({true, op.family, op.key,
                              LeafHash(store_->tree_.hasher()(op.family, op.key), op.value)});
          break;
        case OpKind::kDelete:
          changes_.push_back({false, op.family, op.key, {}});
          break;
        case OpKind::kDeleteRange:
          s = AddCoveredDeletes(store_->db_.get(), handle, op, &changes_,
                                [](const rocksdb::Slice& key) { return key.ToString(); });
          if (!s.ok()) return s;
          break;
      }
    }
    ops.clear();  // their data is in the records now
    Append(records, records.GetDataSize());
    return Status::OK();
  }

  Status StartPut(FamilyTag family, std::string_view key, uint64_t value_size) override {
    if (value_left_ != 0) return Status::InvalidArgument("a put staged inside another's value");
    net::MutexLock lock(&store_->mu_);
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    Status s = store_->Handle(family, &handle);
    if (!s.ok()) return s;
    rocksdb::WriteBatch record;
    rocksdb::Status rs = record.Put(handle, rocksdb::Slice(key.data(), key.size()), "");
    if (!rs.ok()) return FromRocks(rs, "cannot build the write batch");
    // The record ends with the empty value's length, a one-byte varint 0:
    // put the real length in its place; the value's bytes follow.
    Append(record, record.GetDataSize() - 1);
    for (uint64_t v = value_size;; v >>= 7) {
      rep_.push_back(static_cast<char>(v < 0x80 ? v : (v & 0x7f) | 0x80));
      if (v < 0x80) break;
    }
    hash_ = std::make_unique<LeafHashStream>(store_->tree_.hasher()(family, key));
    changes_.push_back({true, family, std::string(key), {}});
    value_left_ = value_size;
    return Status::OK();
  }

  Status AddValue(std::string_view data) override {
    if (data.size() > value_left_) return Status::InvalidArgument("value longer than announced");
    rep_.append(data);
    hash_->Update(data);
    value_left_ -= data.size();
    if (value_left_ == 0) changes_.back().leaf_hash = hash_->Finish();
    return Status::OK();
  }

  // The write batch, which takes the records; the staged write is spent.
  Status Take(rocksdb::WriteBatch* out) {
    if (value_left_ != 0) return Status::InvalidArgument("a staged put's value is incomplete");
    for (int i = 0; i < 4; ++i) rep_[8 + i] = static_cast<char>(count_ >> (8 * i));
    *out = rocksdb::WriteBatch(std::move(rep_));
    return Status::OK();
  }
  const std::vector<Change>& changes() const { return changes_; }

 private:
  static constexpr size_t kHeader = 12;   // sequence (8 bytes), count (4)
  static constexpr size_t kSlack = 4096;  // the state record and some headers

  // Appends the first `bytes` of the records of `batch` (after its header).
  void Append(const rocksdb::WriteBatch& batch, size_t bytes) {
    rep_.append(batch.Data(), kHeader, bytes - kHeader);
    count_ += batch.Count();
  }

  RocksFollowerStore* const store_;
  std::string rep_;
  uint32_t count_ = 0;
  std::vector<Change> changes_;
  std::unique_ptr<LeafHashStream> hash_;  // the open put's value
  uint64_t value_left_ = 0;
};

Status RocksFollowerStore::LedgerEntries(const ApplyRequest& request,
                                         std::vector<LedgerEntry>* out) {
  // A key a repair adds was absent here: a lost delete, worth a line, unless
  // the replica started empty (then every key would be one, and nothing was lost).
  const bool adds = request.source == ApplyRequest::Source::kRepair && held_data_;
  // Called under mu_, as this function is (the analysis does not see into lambdas).
  auto held = [&](FamilyTag family, std::string_view key,
                  std::optional<std::string>* value) REQUIRES(mu_) {
    value->reset();
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    Status s = Handle(family, &handle);
    if (!s.ok()) return s;
    std::string bytes;
    rocksdb::Status rs =
        db_->Get(rocksdb::ReadOptions(), handle, rocksdb::Slice(key.data(), key.size()), &bytes);
    if (rs.ok()) *value = std::move(bytes);
    if (!rs.ok() && !rs.IsNotFound()) return FromRocks(rs, "cannot read a key for the ledger");
    return Status::OK();
  };
  auto add = [&](FamilyTag family, std::string_view key,
                 std::optional<std::string> value) REQUIRES(mu_) {
    out->push_back(LedgerEntry{families_[family], std::string(key), std::move(value)});
  };
  std::optional<std::string> old;
  if (auto* staged = static_cast<StagedBatch*>(request.staged)) {
    for (const StagedBatch::Change& c : staged->changes()) {
      Status s = held(c.family, c.key, &old);
      if (!s.ok()) return s;
      bool same =
          c.put ? (old ? LeafHash(tree_.hasher()(c.family, c.key), *old) == c.leaf_hash : !adds)
                : !old;
      if (!same) add(c.family, c.key, std::move(old));
    }
  }
  for (const Op& op : request.ops) {
    if (op.kind == OpKind::kDeleteRange) {
      rocksdb::ColumnFamilyHandle* handle = nullptr;
      Status s = Handle(op.family, &handle);
      if (s.ok() && !IsEmptyRange(op)) {
        s = ForEachCovered(db_.get(), handle, op,
                           [&](const rocksdb::Slice& key, const rocksdb::Slice& value) REQUIRES(
                               mu_) { add(op.family, key.ToStringView(), value.ToString()); });
      }
      if (!s.ok()) return s;
      continue;
    }
    Status s = held(op.family, op.key, &old);
    if (!s.ok()) return s;
    bool same = op.kind == OpKind::kPut ? (old ? *old == op.value : !adds) : !old;
    if (!same) add(op.family, op.key, std::move(old));
  }
  return Status::OK();
}

Status RocksFollowerStore::Handle(FamilyTag family, rocksdb::ColumnFamilyHandle** handle) const {
  auto it = by_tag_.find(family);
  if (it == by_tag_.end()) {
    return Status::InvalidArgument("write to column family tag " + std::to_string(family) +
                                   ", which the master did not announce");
  }
  *handle = it->second;
  return Status::OK();
}

FollowerHooks RocksFollowerStore::Hooks() {
  FollowerHooks hooks;
  hooks.families = [this](const std::vector<FamilyInfo>& families) {
    Status s = TakeFamilies(families);
    if (s.ok()) TellChanged();  // a changed map re-tags the tree
    return s;
  };
  hooks.write = [this](const ApplyRequest& request) { return Write(request); };
  hooks.stage = [this](uint64_t expected_bytes) -> std::unique_ptr<StagedWrite> {
    return std::make_unique<StagedBatch>(this, expected_bytes);
  };
  hooks.snapshot = [this] { return BuiltTree(); };
  hooks.random_bytes = net::SecureRandomBytes;
  hooks.tree_ready = [this] { return tree_built(); };
  hooks.key_count = [this] { return KeysHeld(); };
  return hooks;
}

// Creates the families the master has and we lack, under the master's names.
// A changed tag map re-tags the tree, which is rebuilt from the data.
Status RocksFollowerStore::TakeFamilies(const std::vector<FamilyInfo>& families) {
  std::map<FamilyTag, std::string> map;
  Status s = FamilyMap(families, &map);
  if (!s.ok()) return s;
  net::MutexLock lock(&mu_);
  for (const auto& [tag, name] : map) {
    if (handles_.count(name) != 0) continue;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    rocksdb::Status rs =
        db_->CreateColumnFamily(ReplicaFamilyOptions(options_.rocks, name), name, &handle);
    if (!rs.ok()) return FromRocks(rs, "cannot create column family '" + name + "'");
    log_->info("{}: created column family '{}' (master tag {})", options_.db_path, name, tag);
    handles_[name] = handle;
  }
  bool changed = map != families_;
  if (changed) {
    rocksdb::WriteOptions write;
    write.sync = options_.sync_writes;
    rocksdb::Status rs = db_->Put(write, meta_, kFamiliesKey, EncodeFamilies(map));
    if (!rs.ok()) return FromRocks(rs, "cannot record the master's column families");
    for (const auto& entry : families_) {
      const std::string& name = entry.second;
      bool kept =
          std::any_of(map.begin(), map.end(), [&](const auto& e) { return e.second == name; });
      if (!kept) {
        log_->warn("{}: the master no longer replicates column family '{}'; leaving its data alone",
                   options_.db_path, name);
      }
    }
    families_ = std::move(map);
  }
  by_tag_.clear();
  for (const auto& [tag, name] : families_) by_tag_[tag] = handles_.at(name);
  return changed ? RebuildTree() : Status::OK();
}

// One WriteBatch with the ops and the state; the tree follows only once it is written.
Status RocksFollowerStore::Write(const ApplyRequest& request) {
  if (options_.fail_before_write) {
    Status s = options_.fail_before_write();
    if (!s.ok()) return s;
  }
  auto* staged = static_cast<StagedBatch*>(request.staged);  // only ours come back
  rocksdb::WriteBatch batch;
  if (staged != nullptr) {
    Status s = staged->Take(&batch);
    if (!s.ok()) return s;
  }
  bool written = false;
  Status result;
  StoreChange change;
  std::map<uint32_t, FamilyTag> ids;  // for a staged write's ops, told to on_change_
  {
    net::MutexLock lock(&mu_);
    result = WriteLocked(request, staged, &batch, &written);
    if (!written || !on_change_) return result;
    change.position = position_;
    change.state = state_;
    change.tree = tree_.Snapshot();
    change.tree_built = tree_built_;
    if (staged != nullptr) {
      for (const auto& [tag, handle] : by_tag_) ids[handle->GetID()] = tag;
    }
  }
  std::vector<Op> decoded;
  change.ops = &request.ops;
  if (request.source == ApplyRequest::Source::kStream) {
    change.kind = StoreChange::Kind::kStream;
    change.stream_seq = request.stream_seq;
    if (staged != nullptr) {
      // Its ops went into the write batch's records as they came: read them back.
      rocksdb::Status rs = OpsOf(batch, ids, &decoded);
      if (!rs.ok()) return FromRocks(rs, "cannot read back a staged write's ops");
      change.ops = &decoded;
    }
  }
  on_change_(change);
  return result;
}

Status RocksFollowerStore::WriteLocked(const ApplyRequest& request, StagedWrite* staged_write,
                                       rocksdb::WriteBatch* batch_ptr, bool* written) {
  auto* staged = static_cast<StagedBatch*>(staged_write);
  rocksdb::WriteBatch& batch = *batch_ptr;
  size_t bytes = 64;
  for (const Op& op : request.ops) bytes += op.key.size() + op.value.size() + 16;
  if (staged == nullptr) batch = rocksdb::WriteBatch(bytes);
  std::vector<TreeChange> changes;
  changes.reserve(request.ops.size());
  std::deque<std::string> found;  // keys on disk that range deletes cover
  // Point writes go in key order (stable: a key's own writes keep theirs):
  // the memtable's skip list then finds each insert near the previous one,
  // and its inserts are most of the apply thread's time. Range deletes keep
  // the order as it came.
  std::vector<const Op*> order;
  order.reserve(request.ops.size());
  bool ranges = false;
  for (const Op& op : request.ops) {
    order.push_back(&op);
    ranges = ranges || op.kind == OpKind::kDeleteRange;
  }
  if (!ranges && order.size() > 1) {
    std::stable_sort(order.begin(), order.end(), [](const Op* a, const Op* b) {
      return a->family != b->family ? a->family < b->family : a->key < b->key;
    });
  }
  for (const Op* op_ptr : order) {
    const Op& op = *op_ptr;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    Status s = Handle(op.family, &handle);
    if (!s.ok()) return s;
    if (IsEmptyRange(op)) continue;
    rocksdb::Status rs = AddOp(op, handle, &batch);
    if (!rs.ok()) return FromRocks(rs, "cannot build the write batch");
    switch (op.kind) {
      case OpKind::kPut:
        changes.push_back({true, op.family, op.key, op.value});
        break;
      case OpKind::kDelete:
        changes.push_back({false, op.family, op.key, {}});
        break;
      case OpKind::kDeleteRange:
        s = AddCoveredDeletes(db_.get(), handle, op, &changes, [&](const rocksdb::Slice& key) {
          return std::string_view(found.emplace_back(key.ToString()));
        });
        if (!s.ok()) return s;
        break;
    }
  }
  rocksdb::Status rs = batch.Put(meta_, kStateKey, EncodeState(request.state));
  // The first complete diff (or resume) ends the reconciliation.
  const bool reconciled = unreconciled_ && request.state.applied_seq > 0;
  if (rs.ok() && reconciled) rs = batch.Delete(meta_, kUnreconciledKey);
  if (!rs.ok()) return FromRocks(rs, "cannot build the write batch");

  Status room = reserve_.Check(batch.GetDataSize());
  if (!room.ok()) return room;
  if (ledger_ && (request.source == ApplyRequest::Source::kRepair ||
                  request.source == ApplyRequest::Source::kBootstrap)) {
    // Written down, and on disk, before the write that overwrites it.
    std::vector<LedgerEntry> entries;
    Status s = LedgerEntries(request, &entries);
    if (s.ok()) s = ledger_->Append(entries);
    if (!s.ok()) return s;
  }
  rocksdb::WriteOptions write;
  write.sync = options_.sync_writes || reconciled;
  rs = db_->Write(write, &batch);
  if (!rs.ok()) return FromRocks(rs, "RocksDB write to " + options_.db_path + " failed");
  *written = true;

  state_ = request.state;
  position_ = request.position;
  if (reconciled) {
    unreconciled_ = false;
    if (ledger_) {
      log_->info("{} is a replica of {} now; the ledger {} holds {} entries from this run",
                 options_.db_path, request.state.master_id, ledger_->path(), ledger_->appended());
    } else {
      log_->info("{} is a replica of {} now", options_.db_path, request.state.master_id);
    }
  }
  Status result;
  if (building_) {
    // The tree being built comes from a snapshot this write is not in.
    if (staged != nullptr) {
      for (const StagedBatch::Change& c : staged->changes()) {
        pending_.push_back({c.put, c.family, c.key, c.leaf_hash});
      }
    }
    for (const TreeChange& c : changes) {
      Hash128 leaf = c.put ? LeafHash(tree_.hasher()(c.family, c.key), c.value) : Hash128();
      pending_.push_back({c.put, c.family, std::string(c.key), leaf});
    }
    return result;
  }
  if (staged != nullptr) {
    for (const StagedBatch::Change& c : staged->changes()) {
      if (c.put) {
        Status s = tree_.PutLeafHash(c.family, c.key, c.leaf_hash);
        if (!s.ok() && result.ok()) result = s;
      } else {
        tree_.Erase(c.family, c.key);
      }
    }
  }
  for (size_t i = 0; i < changes.size(); ++i) {
    PrefetchGroupAt(tree_, changes, i, [](const TreeChange& c) {
      return std::optional(std::pair<FamilyTag, std::string_view>(c.family, c.key));
    });
    const TreeChange& c = changes[i];
    if (c.put) {
      size_t left_out = tree_.left_out();
      Status s = tree_.Put(c.family, c.key, c.value);
      if (!s.ok() && result.ok()) result = s;
      if (tree_.left_out() > left_out) {
        // Two keys with one 128-bit key hash: the data is written, the tree
        // holds the lesser key only, as the master's does.
        log_->warn(
            "{}: a key in family {} ({} bytes) has another key's key hash; the greater "
            "of the two is left out of the tree, as on the master",
            options_.db_path, c.family, c.key.size());
      }
    } else {
      tree_.Erase(c.family, c.key);
    }
  }
  if (!result.ok()) log_->error("{}: {}", options_.db_path, result.ToString());
  return result;
}

void RocksFollowerStore::TellChanged() {
  if (on_change_) on_change_(Current());
}

StoreChange RocksFollowerStore::Current() const {
  net::MutexLock lock(&mu_);
  StoreChange change;
  change.position = position_;
  change.state = state_;
  change.tree = tree_.Snapshot();
  change.tree_built = tree_built_;
  return change;
}

const rocksdb::Snapshot* RocksFollowerStore::SnapshotAtPosition(uint64_t* position) const {
  net::MutexLock lock(&mu_);
  *position = position_;
  return db_->GetSnapshot();
}

TaggedFamilies RocksFollowerStore::tagged_families() const {
  net::MutexLock lock(&mu_);
  return TaggedFamilies(by_tag_.begin(), by_tag_.end());
}

FollowerState RocksFollowerStore::State() {
  net::MutexLock lock(&mu_);
  return state_;
}

rocksdb::ColumnFamilyHandle* RocksFollowerStore::family(std::string_view name) const {
  net::MutexLock lock(&mu_);
  auto it = handles_.find(name);
  return it == handles_.end() ? nullptr : it->second;
}

std::vector<FamilyInfo> RocksFollowerStore::families() const {
  net::MutexLock lock(&mu_);
  std::vector<FamilyInfo> out;
  for (const auto& [tag, name] : families_) out.push_back({tag, name});
  return out;
}

TreeView RocksFollowerStore::tree() const {
  net::MutexLock lock(&mu_);
  return tree_.Snapshot();
}

bool RocksFollowerStore::tree_built() const {
  net::MutexLock lock(&mu_);
  return tree_built_;
}

uint64_t RocksFollowerStore::keys() const {
  net::MutexLock lock(&mu_);
  return tree_.size();
}

uint64_t RocksFollowerStore::KeysHeld() const {
  net::MutexLock lock(&mu_);
  if (!building_) return tree_.size();
  uint64_t total = 0;
  for (const auto& [tag, handle] : by_tag_) {
    uint64_t n = 0;
    if (db_->GetIntProperty(handle, "rocksdb.estimate-num-keys", &n)) total += n;
  }
  return total;
}

Status ReadMetaRecord(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta, const char* key,
                      std::optional<std::string>* value) {
  value->reset();
  if (meta == nullptr) return Status::OK();
  std::string bytes;
  rocksdb::Status rs = db->Get(rocksdb::ReadOptions(), meta, key, &bytes);
  if (rs.IsNotFound()) return Status::OK();
  if (!rs.ok()) return FromRocks(rs, std::string("cannot read sdiff's ") + key + " record");
  *value = std::move(bytes);
  return Status::OK();
}

}  // namespace sdiff::plugin
