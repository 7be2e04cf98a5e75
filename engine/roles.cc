// The table of role rules (see roles.h).
#include "engine/roles.h"

#include "engine/server_session.h"

namespace sdiff {
namespace {

bool AcceptsWriters(const MasterHooks& hooks) { return static_cast<bool>(hooks.write); }
bool ServesFiles(const MasterHooks& hooks) { return static_cast<bool>(hooks.open_files); }
bool AuditsOnDemand(const MasterHooks& hooks) { return static_cast<bool>(hooks.audit); }

constexpr RoleRules kFollower{.streams = true, .diffs = true, .refusal = {}};
constexpr RoleRules kInspector{.diffs = true, .diffed_at_once = true, .refusal = {}};
constexpr RoleRules kWriter{
    .writes = true, .served = AcceptsWriters, .refusal = "this master does not accept writers"};
constexpr RoleRules kCloner{
    .copies_files = true, .served = ServesFiles, .refusal = "this master does not serve its files"};
constexpr RoleRules kAuditor{
    .audits = true, .served = AuditsOnDemand, .refusal = "this master does not audit on demand"};

}  // namespace

const RoleRules& RulesFor(Role role) {
  switch (role) {
    case Role::kFollower:
      return kFollower;
    case Role::kInspector:
      return kInspector;
    case Role::kWriter:
      return kWriter;
    case Role::kCloner:
      return kCloner;
    case Role::kAuditor:
      return kAuditor;
  }
  return kInspector;  // unreachable: the decoder admits only the roles above
}

}  // namespace sdiff
