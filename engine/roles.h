// RoleRules: what each client role may do on a master and what it is given,
// as one table (docs/protocol.md, "Roles"). ServerSession and the master's
// driver read the table instead of testing roles one by one, so a new role
// (a chained follower's relay) is a new row, not new checks.
#pragma once

#include <string_view>

#include "engine/messages.h"

namespace sdiff {

struct MasterHooks;

struct RoleRules {
  // Gets the live stream: the master chooses resume, bootstrap or diff for
  // it (Welcome), then hands it every batch from its position on.
  bool streams = false;
  // Takes part in diffs: the master may diff it, and it may ask for a diff
  // (SyncRequest) and answer one (SyncRoot, Nodes).
  bool diffs = false;
  // Is diffed once as soon as it is welcomed (an inspector); a streaming
  // role is diffed at once only when it cannot resume (diff_on_connect).
  bool diffed_at_once = false;
  // May send Writes, which the master commits (MasterHooks::write).
  bool writes = false;
  // Is sent the master's database files (Welcome in mode kFiles), then the
  // session ends.
  bool copies_files = false;
  // Is sent one self-audit's report (kRunAudit, then AuditReport), then the
  // session ends.
  bool audits = false;
  // Whether a master with these hooks serves the role (it needs a hook for
  // it); null: every master does. A master that does not refuses the Hello
  // with Reject{kRole} and `refusal`.
  bool (*served)(const MasterHooks& hooks) = nullptr;
  std::string_view refusal;
};

// The rules of a role; every Role value has a row (the decoder admits no other).
const RoleRules& RulesFor(Role role);

}  // namespace sdiff
