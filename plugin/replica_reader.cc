// sdiff::ReplicaReader (include/sdiff/replica_reader.h): a RocksDB secondary
// instance over a follower's directory, and the follower's state read from
// its metadata family (plugin/follower_store.h).
#include "sdiff/replica_reader.h"

#include <rocksdb/db.h>

#include <chrono>
#include <functional>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "plugin/follower_store.h"
#include "plugin/rocks_status.h"

namespace sdiff {

struct ReplicaReader::Rep {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // every one Open returned
  // The replicated families by name; the metadata family is apart.
  std::map<std::string, rocksdb::ColumnFamilyHandle*, std::less<>> families;
  rocksdb::ColumnFamilyHandle* meta = nullptr;  // null: not (yet) a follower's directory

  ~Rep() {
    for (rocksdb::ColumnFamilyHandle* handle : handles) db->DestroyColumnFamilyHandle(handle);
  }
};

Status ReplicaReader::Open(const std::string& replica_dir, const std::string& secondary_dir,
                           std::unique_ptr<ReplicaReader>* out) {
  std::vector<std::string> names;
  rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), replica_dir, &names);
  if (!rs.ok()) return plugin::FromRocks(rs, "cannot open the replica " + replica_dir);
  rocksdb::Options options;
  options.max_open_files = -1;  // a secondary instance requires it
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) descriptors.emplace_back(name, options);
  auto rep = std::make_unique<Rep>();
  rocksdb::DB* db = nullptr;
  rs = rocksdb::DB::OpenAsSecondary(options, replica_dir, secondary_dir, descriptors, &rep->handles,
                                    &db);
  if (!rs.ok()) return plugin::FromRocks(rs, "cannot open the replica " + replica_dir);
  rep->db.reset(db);
  for (rocksdb::ColumnFamilyHandle* handle : rep->handles) {
    if (handle->GetName() == plugin::kMetaFamily) {
      rep->meta = handle;
    } else {
      rep->families.emplace(handle->GetName(), handle);
    }
  }
  out->reset(new ReplicaReader(std::move(rep)));
  return Status::OK();
}

ReplicaReader::ReplicaReader(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}

ReplicaReader::~ReplicaReader() = default;

Status ReplicaReader::CatchUp() {
  rocksdb::Status rs = rep_->db->TryCatchUpWithPrimary();
  if (!rs.ok()) return plugin::FromRocks(rs, "cannot catch up with the replica");
  return Status::OK();
}

Status ReplicaReader::Get(std::string_view family, std::string_view key, std::string* value) const {
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
      return Status::TimedOut("the replica holds master sequence " + std::to_string(applied) +
                              ", not " + std::to_string(seq) + ", after " +
                              std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(kPeriod);
    s = CatchUp();
    if (!s.ok()) return s;
  }
}

}  // namespace sdiff
