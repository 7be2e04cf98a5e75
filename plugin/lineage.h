// Lineage: how a database directory becomes a master's, and with which
// identity. A master serves under an identity that followers record with
// their applied sequence; a follower resumes only on the identity it
// followed. Promotion turns a stopped follower's directory into a master's
// under a new identity, recording its lineage: the identity it followed, the
// sequence it had applied, and its own sequence at the promotion, so that
// followers of the old master at exactly that point resume on the new one
// (engine/server_session.h, LineageLink; docs/architecture.md, "Lineage").
//
// Records live in sdiff's own family (plugin/follower_store.h's layout):
// a follower's "state", a promoted master's "master" (MasterRecord).
#pragma once

#include <rocksdb/db.h>

#include <string>

#include "engine/status.h"
#include "plugin/follower_store.h"

namespace sdiff::plugin {

// How sdiff-rocks-master takes the database `db` (opened with every family;
// `meta` is its "__sdiff" family, or null if it has none).
//
// Without `promote`: a follower's directory (it holds a follower state, or
// is being reconciled) is refused (InvalidArgument: serving it would let it
// take writes its master never sees, and restarting it as that master's
// follower would then drop them silently). A promoted master's directory
// gives its record in *record; any other, an empty record (the master then
// serves under the database's own identity, as any master).
//
// With `promote`: anything but a follower's directory is refused
// (InvalidArgument), and nothing is written. A follower's becomes a master's
// in one fsynced write: a new random identity, the lineage link (the old
// identity and the sequence it had applied, to this database's sequence
// once the write is done), and the follower state removed. A follower that
// had not finished its diff or bootstrap (applied sequence 0) holds no one
// state of its master: it is promoted with no lineage (its followers diff).
// *note says what was done, for the log.
Status TakeAsMaster(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta, bool promote,
                    MasterRecord* record, std::string* note);

}  // namespace sdiff::plugin
