// MasterHub and BatchSink: what a master's server needs of the replicated
// data, and how it is handed each session's stream. The RocksDB master
// (plugin/master.h, through its BatchLog) and the in-memory master of the
// tests implement MasterHub; net/'s MasterServer calls it and implements a
// BatchSink per connection. Interfaces only: no I/O here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/merkle_tree.h"
#include "engine/messages.h"
#include "engine/server_session.h"

namespace sdiff {

// A committed batch as the hub hands it to sessions: the batch, shared and
// never copied, and its Batch frame encoded once for every session that sends
// it whole (SharedBatchFrame; null: each session encodes it, as for a batch
// replayed from the resume window or one that goes in pieces). Encoding per
// session made a master with 8 followers spend 8 encodings on each batch.
struct StreamBatch {
  std::shared_ptr<const Batch> batch;
  std::shared_ptr<const std::string> frame;
};

// Receives one session's stream. Called by the hub, from one thread at a time,
// in stream order.
class BatchSink {
 public:
  virtual ~BatchSink() = default;
  // Consecutive batches, in sequence order. Handed over in groups so that a
  // fast stream costs the sink one wake-up per group, not one per batch.
  virtual void OnBatches(std::vector<StreamBatch> batches) = 0;
  // The master tree as of sequence `seq`: the last batch given to this
  // sink, or beyond it when the tree jumped (a rebuild) and no batch will
  // ever carry what lies between.
  virtual void OnSnapshot(TreeView snapshot, uint64_t seq) = 0;
};

// What the master server needs of the replicated data. Thread-safe.
class MasterHub {
 public:
  virtual ~MasterHub() = default;
  virtual ServerOptions SessionOptions() = 0;  // identity, families
  virtual MasterHooks SessionHooks() = 0;      // one set per session
  // Give `sink` every committed batch from `from_seq` on, then each new one.
  virtual void Subscribe(std::shared_ptr<BatchSink> sink, uint64_t from_seq) = 0;
  // Call sink->OnSnapshot with a tree that covers at least `seq`, in order
  // after the batches it was given. A stream that started from a bootstrap or
  // a copy (read at the database's newest sequence) can be ahead of the tree;
  // the snapshot then waits until the tree has caught up.
  virtual void RequestSnapshot(const std::shared_ptr<BatchSink>& sink, uint64_t seq) = 0;
  virtual void Unsubscribe(const BatchSink* sink) = 0;
  // Why the hub cannot serve anyone now (a relay that follows no master
  // yet), or empty when it can. The server refuses connections meanwhile.
  virtual std::string Unavailable() { return {}; }
};

}  // namespace sdiff
