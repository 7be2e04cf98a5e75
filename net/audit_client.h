// AuditMaster: asks a running master to check its merkle tree against its
// database now (the self-audit, plugin/audit.h) and returns the outcome:
// sdiff-ldb's `--master audit`.
#pragma once

#include <string>

#include "engine/messages.h"
#include "engine/status.h"
#include "net/session_runner.h"

namespace sdiff::net {

struct AuditClientOptions {
  ClientRunOptions connect;  // master address, TLS, timeouts (no deadline by default:
                             // an audit of a large database takes minutes, and the
                             // master's Pings show it is alive meanwhile)
  std::string secret;        // shared secret; empty: none
};

// OK with *report when the audit ran (report->mismatches > 0: the master's
// tree differed from its data and has been corrected). Otherwise one line:
// the master could not be reached, refused the auditor (wrong secret, a
// master that does not audit on demand), or its audit failed (the master's
// reason).
Status AuditMaster(const AuditClientOptions& options, AuditReport* report);

}  // namespace sdiff::net
