// AddOp: one sdiff Op as a record of a RocksDB WriteBatch. The master's writer
// sessions, the follower's applies and the inspector's repairs all build their
// batches with it.
#pragma once

#include <rocksdb/status.h>

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

}  // namespace sdiff::plugin
