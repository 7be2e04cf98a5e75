// The routes of the metrics port: each reads the status, the disk and the clock.
#include "tools/metrics_pages.h"

#include <chrono>
#include <filesystem>
#include <system_error>

#include "tools/metrics_text.h"
#include "tools/status_json.h"

namespace sdiff::tools {
namespace {

constexpr const char* kJson = "application/json";

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

DiskSpace ReadDiskSpace(const std::string& path) {
  std::error_code ec;
  std::filesystem::space_info space = std::filesystem::space(path, ec);
  if (ec) return DiskSpace{};
  return DiskSpace{true, space.available, space.capacity};
}

net::MetricsServer::Routes MasterPages(plugin::Master* master, const std::string& db_path,
                                       const plugin::MasterOptions& options) {
  const net::TlsOptions& tls = options.server.tls;
  const DaemonFacts facts{db_path,
                          "",
                          !options.server.secret.empty(),
                          tls.enabled(),
                          !tls.ca_file.empty(),
                          options.min_free_bytes};
  auto metrics = [master, facts] {
    return MasterMetrics(master->status()) +
           DiskMetrics(ReadDiskSpace(facts.db_path), facts.min_free_bytes);
  };
  auto status = [master, facts] {
    return MasterStatusJson(master->status(), master->master_id(), facts,
                            ReadDiskSpace(facts.db_path), NowUnixMs())
               .dump(2) +
           "\n";
  };
  return {{"/metrics", {net::MetricsServer::kPrometheusText, metrics}},
          {"/status", {kJson, status}}};
}

net::MetricsServer::Routes FollowerPages(const plugin::Follower* follower,
                                         const plugin::FollowerOptions& options) {
  const net::TlsOptions& tls = options.client.tls;
  const DaemonFacts facts{options.db_path, options.client.master, !options.client.secret.empty(),
                          tls.enabled(),   tls.enabled(),         options.min_free_bytes};
  auto metrics = [follower, facts] {
    return FollowerMetrics(follower->status()) +
           DiskMetrics(ReadDiskSpace(facts.db_path), facts.min_free_bytes);
  };
  auto status = [follower, facts] {
    return FollowerStatusJson(follower->status(), facts, ReadDiskSpace(facts.db_path), NowUnixMs())
               .dump(2) +
           "\n";
  };
  return {{"/metrics", {net::MetricsServer::kPrometheusText, metrics}},
          {"/status", {kJson, status}}};
}

}  // namespace sdiff::tools
