// RocksMasterHooks: sessions' reads, bootstrap scans, writes and file copies
// on a live RocksDB (see rocks_master_hooks.h).
#include "plugin/rocks_master_hooks.h"

#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <utility>

#include "net/secure_random.h"
#include "plugin/db_files.h"
#include "plugin/write_batch_op.h"

namespace sdiff::plugin {
namespace {

// A bootstrap scan over a snapshot, family by family (ascending tag), key by key.
class BootstrapCursor {
 public:
  using SnapshotFn = std::function<const rocksdb::Snapshot*(uint64_t* seq)>;
  // `take`: see RocksMasterHooksOptions::bootstrap_snapshot (may be empty).
  BootstrapCursor(rocksdb::DB* db, TaggedFamilies families, SnapshotFn take)
      : db_(db), families_(std::move(families)), take_(std::move(take)) {}
  ~BootstrapCursor() { Close(); }

  // Takes a new snapshot and places the cursor at the start, or (`resume`)
  // just after (family, key). Returns the snapshot's sequence.
  uint64_t Open(bool resume, FamilyTag family, const std::string& key) {
    Close();
    uint64_t seq = 0;
    if (take_) {
      snapshot_ = take_(&seq);
    } else {
      snapshot_ = db_->GetSnapshot();
      seq = snapshot_->GetSequenceNumber();
    }
    family_ = 0;
    if (resume) {
      while (family_ < families_.size() && families_[family_].first < family) ++family_;
    }
    if (family_ < families_.size()) {
      OpenFamily();
      if (resume && families_[family_].first == family) {
        it_->Seek(key);
        if (it_->Valid() && it_->key() == key) it_->Next();
      } else {
        it_->SeekToFirst();
      }
    }
    return seq;
  }

  // Appends puts of about max_bytes; true once every family is done (the
  // snapshot is then released).
  bool Scan(size_t max_bytes, std::vector<Op>* out) {
    size_t bytes = 0;
    while (family_ < families_.size() && bytes < max_bytes) {
      if (!it_->Valid()) {
        if (++family_ < families_.size()) {
          OpenFamily();
          it_->SeekToFirst();
        }
        continue;
      }
      out->push_back(Op{OpKind::kPut, families_[family_].first, it_->key().ToString(),
                        it_->value().ToString()});
      bytes += it_->key().size() + it_->value().size() + 8;
      it_->Next();
    }
    bool done = family_ >= families_.size();
    if (done) Close();
    return done;
  }

 private:
  void Close() {
    it_.reset();
    if (snapshot_ != nullptr) db_->ReleaseSnapshot(snapshot_);
    snapshot_ = nullptr;
  }
  void OpenFamily() {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot_;
    ro.fill_cache = false;
    it_.reset(db_->NewIterator(ro, families_[family_].second));
  }

  rocksdb::DB* const db_;
  const TaggedFamilies families_;
  const SnapshotFn take_;
  const rocksdb::Snapshot* snapshot_ = nullptr;
  size_t family_ = 0;
  std::unique_ptr<rocksdb::Iterator> it_;
};

}  // namespace

RocksMasterHooks::RocksMasterHooks(rocksdb::DB* db, TaggedFamilies families, BatchLog* log,
                                   std::function<void()> wrote, RocksMasterHooksOptions options)
    : db_(db),
      families_(std::move(families)),
      log_(log),
      wrote_(std::move(wrote)),
      options_(std::move(options)),
      reserve_(DiskReserveOptions{db->GetName(), options_.min_free_bytes, "the master",
                                  "refuses writes through it", options_.free_bytes,
                                  options_.logger ? options_.logger : spdlog::default_logger()}) {
  for (const auto& [tag, handle] : families_) by_tag_[tag] = handle;
}

ServerOptions RocksMasterHooks::SessionOptions() const {
  ServerOptions o;
  o.master_id = options_.master_id;
  o.lineage = options_.lineage;
  o.bootstrap_min_keys = options_.bootstrap_min_keys;
  o.diff_on_connect = options_.diff_on_connect;
  for (const auto& [tag, handle] : families_)
    o.families.push_back(FamilyInfo{tag, handle->GetName()});
  return o;
}

MasterHooks RocksMasterHooks::Make() {
  MasterHooks h;
  h.current_seq = [this] { return log_->tailed_seq(); };
  h.newest_seq = options_.newest_seq;
  h.key_count = [this] { return log_->key_count(); };
  h.can_resume = [this](uint64_t seq) { return log_->CanResume(seq); };
  h.read = [this](const std::vector<KeyRef>& keys,
                  std::vector<std::optional<std::string>>* values) { return Read(keys, values); };
  if (options_.allow_writers) {
    h.write = [this](const std::vector<Op>& ops, uint64_t* seq) { return Write(ops, seq); };
  }
  if (options_.serve_files) {
    h.open_files = [this](std::unique_ptr<FileSource>* out) {
      std::vector<rocksdb::ColumnFamilyHandle*> handles;
      for (const auto& [tag, handle] : families_) handles.push_back(handle);
      return OpenDbFiles(db_, handles, out);
    };
  }
  auto cursor = std::make_shared<BootstrapCursor>(db_, families_, options_.bootstrap_snapshot);
  h.open_bootstrap = [cursor](bool resume, FamilyTag family, const std::string& key) {
    return cursor->Open(resume, family, key);
  };
  h.scan_bootstrap = [cursor](size_t max_bytes, std::vector<Op>* out) {
    return cursor->Scan(max_bytes, out);
  };
  h.random_bytes = net::SecureRandomBytes;
  return h;
}

Status RocksMasterHooks::Read(const std::vector<KeyRef>& keys,
                              std::vector<std::optional<std::string>>* values) {
  values->clear();
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  Status result;
  for (const KeyRef& k : keys) {
    auto family = by_tag_.find(k.family);
    std::string value;
    rocksdb::Status s = family == by_tag_.end() ? rocksdb::Status::NotFound()
                                                : db_->Get(ro, family->second, k.key, &value);
    if (s.ok()) {
      values->push_back(std::move(value));
    } else if (s.IsNotFound()) {
      values->push_back(std::nullopt);
    } else {
      result = Status::IOError("reading for repair: " + s.ToString());
      break;
    }
  }
  db_->ReleaseSnapshot(snapshot);
  return result;
}

Status RocksMasterHooks::Write(const std::vector<Op>& ops, uint64_t* seq) {
  rocksdb::WriteBatch batch;
  for (const Op& op : ops) {
    auto family = by_tag_.find(op.family);
    if (family == by_tag_.end()) {
      return Status::InvalidArgument("no replicated column family has tag " +
                                     std::to_string(op.family));
    }
    // RocksDB refuses a range that ends before it starts at DB::Write and
    // then keeps the error, refusing every later write: check it here.
    if (op.kind == OpKind::kDeleteRange &&
        family->second->GetComparator()->Compare(op.key, op.value) > 0) {
      return Status::InvalidArgument("writer's batch: a delete range ends before it starts");
    }
    rocksdb::Status s = AddOp(op, family->second, &batch);
    if (!s.ok()) return Status::InvalidArgument("writer's batch: " + s.ToString());
  }
  Status room = reserve_.Check(batch.GetDataSize());
  if (!room.ok()) return room;
  rocksdb::WriteOptions write;
  write.sync = options_.sync_writes;
  rocksdb::Status s = db_->Write(write, &batch);
  if (!s.ok()) return Status::IOError("writing to the master's database: " + s.ToString());
  *seq = db_->GetLatestSequenceNumber();
  if (wrote_) wrote_();
  return Status::OK();
}

}  // namespace sdiff::plugin
