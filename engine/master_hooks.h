// What a ServerSession needs from the master's database, and how it asks.
//
// MasterHooks are the master's answers: a few cheap getters the session calls
// itself (current_seq, key_count, can_resume, random_bytes), and the database
// work it never calls itself (read, open_bootstrap, scan_bootstrap, write,
// open_files). For that work the session makes a DbRequest, which the
// embedder serves (ServeDbRequest, on a thread of its choosing: net/ uses a
// database worker, never an I/O thread) and hands back as a DbAnswer. A
// session has at most one request out at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/messages.h"
#include "engine/status.h"
#include "engine/sync.h"

namespace sdiff {

// A consistent copy of the master's database files, served to a cloner (an
// empty follower, Role kCloner). The master keeps these files from deletion
// for as long as the source lives.
class FileSource {
 public:
  struct File {
    std::string name;  // a plain file name, no directory
    uint64_t size = 0;
  };
  virtual ~FileSource() = default;
  // Fixed once the source is made: a session reads it while a Read runs.
  virtual const std::vector<File>& files() const = 0;
  // Replaces *out with up to max_bytes of files()[index] from `offset` (less
  // only at the file's end). *out is the previous chunk's buffer: resizing it
  // to the same size costs nothing.
  virtual Status Read(size_t index, uint64_t offset, size_t max_bytes, std::string* out) = 0;
};

// Reads the master's current values: (*values)[i] for keys[i], nullopt if absent.
using ReadFun = std::function<Status(const std::vector<KeyRef>& keys,
                                     std::vector<std::optional<std::string>>* values)>;

struct MasterHooks {
  std::function<uint64_t()> current_seq;  // last committed sequence
  // Optional: the newest sequence the origin master has committed, as far as
  // this master knows, which Pings carry (followers measure their lag from
  // it). A relay (a follower serving followers) is behind its own master, so
  // its followers' lag is end to end only if it passes on what it heard.
  // Null: current_seq.
  std::function<uint64_t()> newest_seq;
  std::function<uint64_t()> key_count;  // keys in the master's tree
  // Whether every batch after `seq` can still be fed (the WAL still holds it).
  std::function<bool(uint64_t seq)> can_resume;
  ReadFun read;
  // Bootstrap: opens a snapshot to scan in (family, key) order, starting after
  // the given key (or at the start); returns the snapshot's sequence.
  std::function<uint64_t(bool resume, FamilyTag after_family, const std::string& after_key)>
      open_bootstrap;
  // Appends up to about max_bytes of entries from the open snapshot; true at its end.
  std::function<bool(size_t max_bytes, std::vector<Op>* out)> scan_bootstrap;
  std::function<void(uint8_t* out, size_t n)> random_bytes;
  // Writers (Hello.role kWriter): commits `ops` as one atomic batch and sets
  // *seq to a sequence at or after the commit. Null: writers are refused.
  std::function<Status(const std::vector<Op>& ops, uint64_t* seq)> write;
  // Cloners: a copy of the database files, or why there is none (the master's
  // configuration does not allow it). Null: cloners are refused.
  std::function<Status(std::unique_ptr<FileSource>* out)> open_files;
  // Auditors (Hello.role kAuditor): checks the master's tree against its
  // database now and fills *report (its error field aside). Null: auditors
  // are refused. The session never calls it: an audit scans the whole
  // database, so the embedder runs it off its I/O threads when the session
  // asks (kRunAudit) and hands the outcome to OnAuditDone.
  std::function<Status(AuditReport* report)> audit;
};

// Database work a session asks for. Only the fields of its kind are set.
struct DbRequest {
  enum class Kind {
    kReadKeys,       // keys: their current values (a diff's repair)
    kOpenBootstrap,  // resume, family, key: open the bootstrap snapshot
    kScanBootstrap,  // max_bytes: the snapshot's next entries
    kOpenFiles,      // a copy of the database files (a cloner)
    kReadFile,       // files, file_index, offset, max_bytes into buffer
    kCommitWrite,    // ops: one atomic batch (a writer)
  };
  Kind kind = Kind::kReadKeys;
  std::vector<KeyRef> keys;
  bool resume = false;
  FamilyTag family = 0;
  std::string key;
  size_t max_bytes = 0;
  std::shared_ptr<FileSource> files;
  size_t file_index = 0;
  uint64_t offset = 0;
  std::string buffer;  // kReadFile: the previous chunk's, to reuse
  std::vector<Op> ops;

  static DbRequest ReadKeys(std::vector<KeyRef> keys);
  static DbRequest OpenBootstrap(bool resume, FamilyTag after_family, std::string after_key);
  static DbRequest ScanBootstrap(size_t max_bytes);
  static DbRequest OpenFiles();
  static DbRequest ReadFile(std::shared_ptr<FileSource> files, size_t index, uint64_t offset,
                            size_t max_bytes, std::string buffer);
  static DbRequest CommitWrite(std::vector<Op> ops);
};

// The outcome of a DbRequest of the same kind.
struct DbAnswer {
  DbRequest::Kind kind = DbRequest::Kind::kReadKeys;
  Status status;
  std::vector<KeyRef> keys;                        // kReadKeys: the request's, given back
  std::vector<std::optional<std::string>> values;  // kReadKeys: values[i] for keys[i]
  uint64_t seq = 0;                                // kOpenBootstrap, kCommitWrite
  std::vector<Op> ops;                             // kScanBootstrap: entries
  bool done = false;                               // kScanBootstrap: the snapshot's end
  std::shared_ptr<FileSource> files;               // kOpenFiles
  std::string data;                                // kReadFile
};

// Does `request` with `hooks`, on the calling thread.
DbAnswer ServeDbRequest(const MasterHooks& hooks, DbRequest request);

}  // namespace sdiff
