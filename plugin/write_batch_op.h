// AddOp: one sdiff Op as a record of a RocksDB WriteBatch. The master's writer
// sessions, the follower's applies and the inspector's repairs all build their
// batches with it. OpsOf: the way back, for the records such a batch holds.
#pragma once

#include <rocksdb/status.h>

#include <cstdint>
#include <map>
#include <vector>

#include "engine/messages.h"

namespace rocksdb {
class ColumnFamilyHandle;
class WriteBatch;
}  // namespace rocksdb

namespace sdiff::plugin {

// Adds `op` to *batch in `family`. A range delete goes in as it came: what an
// empty or reversed range means is the caller's rule (RocksDB accepts an empty
// one and refuses a reversed one only when the batch is written).
rocksdb::Status AddOp(const Op& op, rocksdb::ColumnFamilyHandle* family,
                      rocksdb::WriteBatch* batch);

// Appends to *out the puts, deletes and range deletes `batch` holds in the
// column families `families` maps (RocksDB family ID -> tag), in order;
// records of other families are skipped. For a batch AddOp built: records
// it never writes (merges, single deletes) are left to RocksDB's handler
// defaults, which skip or refuse them.
rocksdb::Status OpsOf(const rocksdb::WriteBatch& batch,
                      const std::map<uint32_t, FamilyTag>& families, std::vector<Op>* out);

}  // namespace sdiff::plugin
