// The daemons' --metrics page: a master's or a follower's status in the
// Prometheus text exposition format (HELP and TYPE lines, names prefixed
// sdiff_). docs/operations.md lists every metric and what it means.
#pragma once

#include <string>

#include "plugin/follower.h"
#include "plugin/master.h"

namespace sdiff::tools {

std::string MasterMetrics(const plugin::MasterStatus& status);
std::string FollowerMetrics(const plugin::FollowerStatus& status);

}  // namespace sdiff::tools
