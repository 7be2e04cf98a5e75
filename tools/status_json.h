// The daemons' GET /status page: one JSON object in the spirit of Redis's
// INFO replication (role, identity, sequences, followers and their lag, last
// diff and audit, security, version). docs/operations.md ("Monitor") lists
// every field; these builders are pure, the daemon passes the clock and disk in.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "plugin/follower.h"
#include "plugin/master.h"
#include "tools/daemon_facts.h"

namespace sdiff::tools {

// `now_unix_ms` turns timestamps into ages.
nlohmann::ordered_json MasterStatusJson(const plugin::MasterStatus& status,
                                        const std::string& master_id, const DaemonFacts& facts,
                                        const DiskSpace& disk, int64_t now_unix_ms);
nlohmann::ordered_json FollowerStatusJson(const plugin::FollowerStatus& status,
                                          const DaemonFacts& facts, const DiskSpace& disk,
                                          int64_t now_unix_ms);

}  // namespace sdiff::tools
