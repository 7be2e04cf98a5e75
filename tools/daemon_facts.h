// What a daemon knows of itself beyond the plugin's status (its settings and
// its disk), for the pages on its metrics port: /metrics and /status.
#pragma once

#include <cstdint>
#include <string>

namespace sdiff::tools {

struct DaemonFacts {
  std::string db_path;
  std::string master_address;      // a follower's --master; empty on a master
  bool auth = false;               // a shared secret (--secret-file) that peers must prove
  bool tls = false;                // any of --tls-cert, --tls-key, --tls-ca
  bool tls_verifies_peer = false;  // master: --tls-ca (mutual TLS); follower: true under TLS
  uint64_t min_free_bytes = 0;     // --min-free-mb; 0: no reserve kept
};

// The disk holding the database.
struct DiskSpace {
  bool known = false;           // false: the path could not be statted
  uint64_t free_bytes = 0;      // available to the daemon (statvfs f_bavail)
  uint64_t capacity_bytes = 0;  // the file system's size
};
DiskSpace ReadDiskSpace(const std::string& path);

}  // namespace sdiff::tools
