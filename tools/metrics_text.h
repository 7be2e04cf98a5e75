// The daemons' --metrics page: a master's or a follower's status in the
// Prometheus text exposition format (HELP and TYPE lines, names prefixed
// sdiff_). docs/operations.md lists every metric and what it means.
#pragma once

#include <string>

#include "plugin/follower.h"
#include "plugin/master.h"
#include "tools/daemon_facts.h"

namespace sdiff::tools {

std::string MasterMetrics(const plugin::MasterStatus& status);
std::string FollowerMetrics(const plugin::FollowerStatus& status);
// The disk holding the database and the reserve kept on it, for either role's
// page; nothing when the disk could not be read.
std::string DiskMetrics(const DiskSpace& disk, uint64_t reserve_bytes);

}  // namespace sdiff::tools
