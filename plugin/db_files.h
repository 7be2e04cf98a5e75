// The master's side of a clone: a consistent copy of the database files that
// an empty follower receives instead of the keys one by one (Role kCloner,
// engine/clone_session.h describes the exchange).
//
// The copy is RocksDB's own live-copy set (DB::GetLiveFilesStorageInfo, as
// Checkpoint uses): SST files, the MANIFEST and CURRENT as of one moment, and
// the live WAL files up to that moment, so the copy opens as the database at
// one sequence. The master's obsolete files are kept from deletion while a
// source lives. The master's OPTIONS and IDENTITY files are not sent: the
// replica has its own options and its own identity.
#pragma once

#include <memory>
#include <vector>

#include "engine/server_session.h"
#include "engine/status.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace sdiff::plugin {

// Fails with InvalidArgument (the reason a cloner is told) when a copy of the
// files would not be the replica the stream and diffs keep: column families
// the master does not replicate (their data would go to the follower too), a
// comparator other than the bytewise one, a merge operator (the files hold
// merge operands, the follower resolves none), data outside the DB
// directory (db_paths, cf_paths), two-phase commits (allow_2pc: a WAL with
// prepared transactions opens only as a TransactionDB), or two_write_queues.
Status OpenDbFiles(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& replicated,
                   std::unique_ptr<FileSource>* out);

}  // namespace sdiff::plugin
