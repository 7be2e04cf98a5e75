// The public API's flat structs (include/sdiff/options.h) in the plugin's own
// terms and back: what sdiff::Master and sdiff::Follower hand to
// plugin::Master and plugin::Follower. Internal; the tests check that the
// public defaults are the plugin's.
#pragma once

#include "plugin/follower.h"
#include "plugin/master.h"
#include "plugin/progress.h"
#include "sdiff/options.h"

namespace sdiff::plugin {

// Everything but the listener, whose conversion can fail (Master::Attach's).
MasterOptions FromPublic(const sdiff::MasterOptions& options);
FollowerOptions FromPublic(const sdiff::FollowerOptions& options);
// Empty for an empty callback.
ProgressFn FromPublic(const sdiff::ProgressFn& progress);

sdiff::MasterStatus ToPublic(const MasterStatus& status);
sdiff::FollowerStatus ToPublic(const FollowerStatus& status);
sdiff::AuditResult ToPublic(const AuditResult& result);

}  // namespace sdiff::plugin
