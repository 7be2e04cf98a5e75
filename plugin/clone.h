// CloneFromMaster: makes an empty follower's database a copy of the master's
// files (Role kCloner; the master's side is plugin/db_files.h), so a large
// replica starts at about the speed of a file copy instead of key by key.
//
// The files go to a staging directory beside the database path
// ("<db_path>.sdiff-clone"), each fsynced; the copy is then opened once to
// learn the master sequence it holds and to record the follower's state
// (whom it follows, that sequence, the master's column families), and the
// staging directory is renamed to the database path: a crash at any point
// leaves either no database (and the staging directory, which the next clone
// removes) or the whole copy. The follower then resumes the stream from that
// sequence, and its usual catch-up diff checks the copy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"
#include "net/session_runner.h"
#include "plugin/progress.h"
#include "plugin/replica_options.h"

namespace spdlog {
class logger;
}

namespace sdiff::plugin {

struct CloneFromMasterOptions {
  std::string db_path;            // must not exist, or be an empty directory
  net::ClientRunOptions connect;  // master address, TLS, timeouts
  std::string secret;             // shared secret; empty: none
  ProgressFn progress;            // Progress::Kind::kClone, in bytes; optional
  ReplicaRocksOptions rocks;      // the copy is opened with these, as the follower will
};

struct CloneResult {
  std::string master_id;
  uint64_t seq = 0;  // the master sequence the copy holds
  uint64_t files = 0;
  uint64_t bytes = 0;
};

// NotFound when the master will not serve its files (too few keys, or a
// configuration a copy would not reproduce; the message says which): start
// empty and follow it the usual way. Other errors: the copy failed, and
// nothing was left at db_path.
Status CloneFromMaster(const CloneFromMasterOptions& options, CloneResult* result);

// Whether CloneFromMaster would copy into db_path: it names a directory of
// its own that is missing or empty. (A follower restarting on its replica
// does not clone, and says nothing about it.)
bool CanCloneInto(const std::string& db_path);

// The staging directory CloneFromMaster uses for db_path.
std::string CloneStagingPath(const std::string& db_path);

}  // namespace sdiff::plugin
