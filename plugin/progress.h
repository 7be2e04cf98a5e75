// Progress of the plugin's long work, reported to the embedder: the tree
// build when a master attaches (or rebuilds after a gap), and a follower's
// bootstrap and repairs. The daemons draw it (tools/progress_renderer.h).
#pragma once

#include <cstdint>
#include <functional>

namespace sdiff::plugin {

struct Progress {
  enum class Kind {
    kTreeBuild,  // master: the merkle tree from a snapshot scan
    kBootstrap,  // follower: the master's snapshot streamed into an empty replica
    kRepair,     // follower: keys a diff rewrote or deleted
    kClone,      // follower: bytes of the master's files copied (plugin/clone.h)
  };
  Kind kind = Kind::kTreeBuild;
  uint64_t done = 0;      // keys so far (kClone: bytes)
  uint64_t total = 0;     // keys expected, 0 if unknown; for kTreeBuild RocksDB's estimate
  bool finished = false;  // the last report of this piece of work (also when it failed)
};

// Called from the plugin's own threads, one report at a time per piece of
// work; it must be quick (it may run on the thread that does the work).
using ProgressFn = std::function<void(const Progress&)>;

inline const char* ProgressName(Progress::Kind kind) {
  switch (kind) {
    case Progress::Kind::kTreeBuild:
      return "building the tree";
    case Progress::Kind::kBootstrap:
      return "bootstrapping";
    case Progress::Kind::kRepair:
      return "repairing";
    case Progress::Kind::kClone:
      return "copying the master's files";
  }
  return "working";
}

// What Progress::done and total count for this kind of work.
inline const char* ProgressUnit(Progress::Kind kind) {
  return kind == Progress::Kind::kClone ? "bytes" : "keys";
}

}  // namespace sdiff::plugin
