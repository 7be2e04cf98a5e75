// The pages on a daemon's metrics port (--metrics): /metrics (Prometheus text,
// tools/metrics_text.h) and /status (JSON, tools/status_json.h), each built
// from a fresh status at every request.
#pragma once

#include <string>

#include "net/metrics_server.h"
#include "plugin/follower.h"
#include "plugin/master.h"
#include "tools/daemon_facts.h"

namespace sdiff::tools {

// `master` and `follower` must outlive the server the routes are given to;
// the options are those they were started with.
net::MetricsServer::Routes MasterPages(plugin::Master* master, const std::string& db_path,
                                       const plugin::MasterOptions& options);
net::MetricsServer::Routes FollowerPages(const plugin::Follower* follower,
                                         const plugin::FollowerOptions& options);

}  // namespace sdiff::tools
