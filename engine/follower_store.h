// FollowerStore: the replica a follower's client writes into, as the client
// sees it. The RocksDB follower (plugin/follower_store.h) and the in-memory
// follower of the tests implement it; net/'s FollowerClient calls it.
// An interface only: no I/O here.
#pragma once

#include "engine/client_session.h"
#include "engine/status.h"

namespace sdiff {

// The replica the client writes into. Thread-safe: called from the client's thread.
class FollowerStore {
 public:
  virtual ~FollowerStore() = default;
  virtual FollowerHooks Hooks() = 0;
  virtual FollowerState State() = 0;  // as last persisted
  // Work that must precede the first connection (a store that deferred
  // building its tree builds it here, or starts building it behind the
  // stream). Called on the client's thread before each attempt until it
  // succeeds; an error is logged and retried.
  virtual Status Prepare() { return Status::OK(); }
};

}  // namespace sdiff
