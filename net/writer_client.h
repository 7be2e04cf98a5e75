// WriteThroughMaster: one writer connection to a master started with writers
// allowed (sdiff-rocks-master --allow-writers): sends batches of ops, each
// committed by the master atomically with DB::Write, so they reach followers
// like any other write. sdiff-ldb's `--master put`, `delete` and `load`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/messages.h"
#include "engine/status.h"
#include "net/session_runner.h"

namespace sdiff::net {

struct WriterClientOptions {
  ClientRunOptions connect;   // master address, TLS, timeouts
  std::string secret;         // shared secret; empty: none
  size_t max_in_flight = 16;  // writes sent and not yet acknowledged
};

// Called once the master has said which families it replicates: fills *ops
// with the next write (one atomic batch), or sets *more = false when there
// are no more. An error stops the writer after the writes already sent.
using NextWrite = std::function<Status(const std::vector<FamilyInfo>& families,
                                       std::vector<Op>* ops, bool* more)>;

struct WriteSummary {
  uint64_t writes = 0;    // acknowledged, committed writes
  uint64_t ops = 0;       // ops in them
  uint64_t last_seq = 0;  // the master committed them at or before this sequence
  // Of the writes, those committed but not applied by the followers a
  // master with min_acks waits for before its ack_timeout passed (its
  // WriteAck has a seq and an error); the first one's reason.
  uint64_t unreplicated = 0;
  std::string unreplicated_error;
};

// OK when every write was committed (replicated or not: see
// WriteSummary::unreplicated). Otherwise the first error (the master's
// reason for a refused write, a refused connection, a broken one); *summary
// then counts the writes committed before it.
Status WriteThroughMaster(const WriterClientOptions& options, const NextWrite& next,
                          WriteSummary* summary);

}  // namespace sdiff::net
