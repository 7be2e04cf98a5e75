// sdiff::ReplicaReader (include/sdiff/replica_reader.h): a RocksDB secondary
// instance over a follower's directory, and the follower's state read from
// its metadata family (plugin/follower_store.h).
#include "sdiff/replica_reader.h"

#include <rocksdb/db.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <shared_mutex>
#include <thread>
#include <utility>
#include <vector>

#include "plugin/follower_store.h"
#include "plugin/rocks_status.h"

namespace sdiff {

struct ReplicaReader::Rep {
  std::string replica_dir;
  std::string secondary_dir;
  // Shared by reads and catch-ups, exclusive while the instance is reopened
  // (Reload): every call may come from any thread.
  mutable std::shared_mutex mu;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // every one Open returned
  // The replicated families by name; the metadata family is apart.
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> families;
  rocksdb::ColumnFamilyHandle* meta = nullptr;  // null: not (yet) a follower's directory

  ~Rep() { Close(); }

  void Close() {
    for (rocksdb::ColumnFamilyHandle* handle : handles) db->DestroyColumnFamilyHandle(handle);
    handles.clear();
    families.clear();
    meta = nullptr;
    db.reset();
  }

  // Opens the secondary instance with every column family the replica has now.
  Status Load() {
    std::vector<std::string> names;
    rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), replica_dir, &names);
    if (!rs.ok()) return plugin::FromRocks(rs, "cannot open the replica " + replica_dir);
    rocksdb::Options options;
    options.max_open_files = -1;  // a secondary instance requires it
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) descriptors.emplace_back(name, options);
    rocksdb::DB* raw = nullptr;
    rs = rocksdb::DB::OpenAsSecondary(options, replica_dir, secondary_dir, descriptors, &handles,
                                      &raw);
    if (!rs.ok()) return plugin::FromRocks(rs, "cannot open the replica " + replica_dir);
    db.reset(raw);
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      if (handle->GetName() == plugin::kMetaFamily) {
        meta = handle;
      } else {
        families.emplace(handle->GetName(), handle);
      }
    }
    return Status::OK();
  }

  // A secondary instance sees only the column families there were at its
  // open. A follower that had not made its metadata family yet (it was still
  // starting) may have one now: then open again to see it. OK, and nothing
  // done, while there is none.
  Status Reload() {
    {
      std::shared_lock shared(mu);  // the usual case, without stalling readers
      if (meta != nullptr) return Status::OK();
    }
    std::unique_lock lock(mu);
    if (meta != nullptr) return Status::OK();
    std::vector<std::string> names;
    rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), replica_dir, &names);
    if (!rs.ok() || std::find(names.begin(), names.end(), plugin::kMetaFamily) == names.end()) {
      return Status::OK();
    }
    Close();
    return Load();
  }
};

Status ReplicaReader::Open(const std::string& replica_dir, const std::string& secondary_dir,
                           std::unique_ptr<ReplicaReader>* out) {
  auto rep = std::make_unique<Rep>();
  rep->replica_dir = replica_dir;
  rep->secondary_dir = secondary_dir;
  Status s = rep->Load();
  if (!s.ok()) return s;
  out->reset(new ReplicaReader(std::move(rep)));
  return Status::OK();
}

ReplicaReader::ReplicaReader(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}

ReplicaReader::~ReplicaReader() = default;

Status ReplicaReader::CatchUp() {
  std::shared_lock lock(rep_->mu);
  rocksdb::Status rs = rep_->db->TryCatchUpWithPrimary();
  if (!rs.ok()) return plugin::FromRocks(rs, "cannot catch up with the replica");
  return Status::OK();
}

Status ReplicaReader::Get(std::string_view family, std::string_view key, std::string* value) const {
  std::shared_lock lock(rep_->mu);
  auto it = rep_->families.find(family);
  if (it == rep_->families.end()) {
    return Status::InvalidArgument("the replica has no column family '" + std::string(family) +
                                   "'");
  }
  rocksdb::Status rs = rep_->db->Get(rocksdb::ReadOptions(), it->second,
                                     rocksdb::Slice(key.data(), key.size()), value);
  if (rs.IsNotFound()) return Status::NotFound("no such key");
  if (!rs.ok()) return plugin::FromRocks(rs, "reading the replica");
  return Status::OK();
}

Status ReplicaReader::AppliedSeq(uint64_t* seq) const {
  std::shared_lock lock(rep_->mu);
  std::string bytes;
  rocksdb::Status rs = rocksdb::Status::NotFound();
  if (rep_->meta != nullptr) {
    rs = rep_->db->Get(rocksdb::ReadOptions(), rep_->meta, plugin::kStateKey, &bytes);
  }
  if (rs.IsNotFound()) return Status::NotFound("the replica has recorded no state yet");
  if (!rs.ok()) return plugin::FromRocks(rs, "reading the replica's state");
  FollowerState state;
  Status s = plugin::DecodeState(bytes, &state);
  if (!s.ok()) return s;
  *seq = state.applied_seq;
  return Status::OK();
}

// The follower is another process: nothing here can be woken by its writes,
// so the reader catches up on a short period until the deadline.
Status ReplicaReader::WaitForSequence(uint64_t seq, std::chrono::milliseconds timeout) {
  constexpr auto kPeriod = std::chrono::milliseconds(5);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    uint64_t applied = 0;
    Status s = AppliedSeq(&applied);
    if (s.ok() && applied >= seq) return Status::OK();
    if (!s.ok() && !s.IsNotFound()) return s;
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string holds = s.ok() ? "holds master sequence " + std::to_string(applied)
                                 : "has recorded no master sequence";
      return Status::TimedOut("the replica " + holds + ", not " + std::to_string(seq) + ", after " +
                              std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(kPeriod);
    s = rep_->Reload();
    if (s.ok()) s = CatchUp();
    if (!s.ok()) return s;
  }
}

}  // namespace sdiff
