// sdiff::ReplicaReader: reads a follower's replica from another process, while
// the follower keeps it up to date, through a RocksDB secondary instance
// (rocksdb::DB::OpenAsSecondary): it sees the replica as of Open, and as of
// each CatchUp after it.
//
//   std::unique_ptr<sdiff::ReplicaReader> reader;
//   sdiff::Status s = sdiff::ReplicaReader::Open("/var/lib/replica", "/tmp/reader", &reader);
//   s = reader->CatchUp();  // whenever fresher data is wanted
//   s = reader->Get("default", key, &value);
//
// Column families the master starts replicating after Open are not seen
// until the reader is opened again.
// Public (include/sdiff/): needs no RocksDB, Boost or internal header.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sdiff/status.h"

namespace sdiff {

class ReplicaReader {
 public:
  // `replica_dir` is a follower's FollowerOptions::db_path; `secondary_dir`
  // is this reader's own (RocksDB keeps its info log there), one per reader.
  static Status Open(const std::string& replica_dir, const std::string& secondary_dir,
                     std::unique_ptr<ReplicaReader>* out);
  ~ReplicaReader();
  ReplicaReader(const ReplicaReader&) = delete;
  ReplicaReader& operator=(const ReplicaReader&) = delete;

  // Brings the view up to what the follower has written since Open or the
  // last CatchUp (rocksdb::DB::TryCatchUpWithPrimary). After a failure the
  // view stays as it was; calling again is safe.
  Status CatchUp();
  // The value of `key` in the replicated column family `family` ("default"
  // for the default one). NotFound if the key is absent; InvalidArgument if
  // the replica had no such family at Open.
  Status Get(std::string_view family, std::string_view key, std::string* value) const;
  // The master sequence the replica holds, as of the view: the follower
  // records it with every write it applies. 0 while a diff or bootstrap is
  // rewriting the replica, which then equals no one master sequence.
  // NotFound if the replica has recorded nothing (it never reached a master).
  Status AppliedSeq(uint64_t* seq) const;
  // Read-your-writes from another process: catches up with the replica
  // until it holds master sequence `seq` (AppliedSeq at least `seq`; the
  // view then shows every write up to it), every few milliseconds. OK, or
  // TimedOut when `timeout` passes first (the view is then the latest).
  // A reader opened while the follower was still creating its directory
  // (before its metadata family existed) opens the replica again once it has.
  Status WaitForSequence(uint64_t seq, std::chrono::milliseconds timeout);

  // Every call may come from any thread, as with a rocksdb::DB: a Get that
  // runs during a CatchUp sees the view from before it or after it.

 private:
  struct Rep;
  explicit ReplicaReader(std::unique_ptr<Rep> rep);

  const std::unique_ptr<Rep> rep_;
};

}  // namespace sdiff
