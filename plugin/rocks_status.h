// RocksDB statuses in sdiff's terms, shared by the plugin and the tools: one
// mapping to Status, and one test for "another opener holds the database".
#pragma once

#include <rocksdb/status.h>

#include <string_view>

#include "engine/status.h"

namespace sdiff::plugin {

// "`what`: RocksDB's message" as a Status of the same kind: Corruption,
// NotFound and InvalidArgument keep theirs, anything else is an IOError.
Status FromRocks(const rocksdb::Status& s, std::string_view what);

// True if an open failed because the database's LOCK file is held: by
// another process ("While lock file: DIR/LOCK: Resource temporarily
// unavailable") or by this one ("lock hold by current process, ...").
// Nothing else that mentions a lock, or a block, is taken for one.
bool IsLockHeld(const rocksdb::Status& s);

}  // namespace sdiff::plugin
