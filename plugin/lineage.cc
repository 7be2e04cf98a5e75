// Taking a database as a master's: refusing a follower's, promoting one.
#include "plugin/lineage.h"

#include <fmt/format.h>
#include <rocksdb/write_batch.h>

#include <optional>

#include "net/secure_random.h"
#include "plugin/rocks_status.h"

namespace sdiff::plugin {
namespace {

// 128 random bits in hex: no two promotions share an identity, and none is a
// database's RocksDB identity (a directory copied with its IDENTITY file
// would share that with the master it was copied from).
std::string NewIdentity() {
  uint8_t bytes[16];
  net::SecureRandomBytes(bytes, sizeof(bytes));
  std::string out;
  for (uint8_t b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

Status Promote(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta, const FollowerState& state,
               MasterRecord* record, std::string* note) {
  const std::string path = db->GetName();
  MasterRecord out;
  out.master_id = NewIdentity();
  rocksdb::WriteBatch batch;
  rocksdb::Status rs = batch.Delete(meta, kStateKey);
  if (rs.ok()) rs = batch.Delete(meta, kUnreconciledKey);
  // The link names the sequence this write ends at: one per record in it,
  // the put below included. Nothing else writes: the master is not serving.
  const uint64_t at = db->GetLatestSequenceNumber() + batch.Count() + 1;
  if (state.applied_seq > 0 && !state.bootstrapping && !state.master_id.empty()) {
    out.lineage.push_back(LineageLink{state.master_id, state.applied_seq, at});
  }
  if (rs.ok()) rs = batch.Put(meta, kMasterKey, EncodeMasterRecord(out));
  rocksdb::WriteOptions write;
  write.sync = true;
  if (rs.ok()) rs = db->Write(write, &batch);
  if (!rs.ok()) return FromRocks(rs, "cannot record the promotion of " + path);
  if (db->GetLatestSequenceNumber() != at) {
    return Status::IOError(fmt::format(
        "promoting {}: the promotion's write ended at sequence {}, not {}: another writer?", path,
        db->GetLatestSequenceNumber(), at));
  }
  if (out.lineage.empty()) {
    *note = fmt::format(
        "promoted {} to master {}; it had not finished catching up with {} (a diff or bootstrap "
        "was under way), so it has no lineage: its followers will diff",
        path, out.master_id, state.master_id.empty() ? "its master" : state.master_id);
  } else {
    *note = fmt::format(
        "promoted {} to master {}; lineage: {} up to sequence {} is sequence {} here, so its "
        "followers at that point resume",
        path, out.master_id, state.master_id, state.applied_seq, at);
  }
  *record = std::move(out);
  return Status::OK();
}

}  // namespace

Status TakeAsMaster(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta, bool promote,
                    MasterRecord* record, std::string* note) {
  const std::string path = db->GetName();
  std::optional<std::string> state_bytes, unreconciled, master_bytes;
  Status s = ReadMetaRecord(db, meta, kStateKey, &state_bytes);
  if (s.ok()) s = ReadMetaRecord(db, meta, kUnreconciledKey, &unreconciled);
  if (s.ok()) s = ReadMetaRecord(db, meta, kMasterKey, &master_bytes);
  if (!s.ok()) return s;
  std::optional<MasterRecord> master;
  if (master_bytes) {
    MasterRecord r;
    s = DecodeMasterRecord(*master_bytes, &r);
    if (!s.ok()) return Status::Corruption(path + ": " + s.message());
    master = std::move(r);
  }
  const bool follower = state_bytes.has_value() || unreconciled.has_value();
  if (!promote) {
    if (follower) {
      return Status::InvalidArgument(
          path +
          " is a follower's replica: serving it as is would let it take writes its "
          "master never sees; --promote makes it a master (after its follower has stopped)");
    }
    *record = master.value_or(MasterRecord());
    note->clear();
    return Status::OK();
  }
  if (!follower) {
    return Status::InvalidArgument(
        master ? path + " is a master's already (identity " + master->master_id +
                     "): --promote takes a stopped follower's directory"
               : path +
                     " is not a follower's directory (no follower state in its __sdiff "
                     "family): --promote takes a stopped follower's directory");
  }
  FollowerState state;  // an unreadable state promotes with no lineage
  if (state_bytes && !DecodeState(*state_bytes, &state).ok()) state = FollowerState();
  if (unreconciled) state.applied_seq = 0;  // its first diff had not finished
  return Promote(db, meta, state, record, note);
}

}  // namespace sdiff::plugin
