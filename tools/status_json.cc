// The /status page's JSON, built from the plugin's status structs.
#include "tools/status_json.h"

#include <algorithm>

#include "engine/messages.h"
#include "engine/wire.h"
#include "sdiff/version.h"

namespace sdiff::tools {
namespace {

using json = nlohmann::ordered_json;

const char* StartModeName(StartMode mode) {
  switch (mode) {
    case StartMode::kResume:
      return "resume";
    case StartMode::kDiff:
      return "diff";
    case StartMode::kBootstrap:
      return "bootstrap";
    case StartMode::kFiles:
      return "files";
  }
  return "unknown";
}

// Seconds between a Unix time in ms and now; null for "never" (0).
json AgeSeconds(int64_t unix_ms, int64_t now_unix_ms) {
  if (unix_ms == 0) return nullptr;
  return static_cast<double>(std::max<int64_t>(0, now_unix_ms - unix_ms)) / 1000;
}

json Version() { return {{"sdiff", kVersion}, {"protocol", wire::kProtocolVersion}}; }

json Security(const DaemonFacts& facts) {
  const char* tls = !facts.tls ? "off" : facts.tls_verifies_peer ? "verify-peer" : "on";
  return {{"auth", facts.auth ? "shared-secret" : "none"}, {"tls", tls}};
}

json Disk(const DaemonFacts& facts, const DiskSpace& disk) {
  json out = {{"path", facts.db_path}, {"reserve_bytes", facts.min_free_bytes}};
  out["free_bytes"] = disk.known ? json(disk.free_bytes) : json(nullptr);
  out["capacity_bytes"] = disk.known ? json(disk.capacity_bytes) : json(nullptr);
  out["below_reserve"] = disk.known && disk.free_bytes < facts.min_free_bytes;
  return out;
}

json Audit(const plugin::AuditStats& audit, int64_t now_unix_ms) {
  json last = nullptr;
  if (audit.last_failed) {
    last = {{"result", "failed"},
            {"unix_ms", audit.last_failure_unix_ms},
            {"age_seconds", AgeSeconds(audit.last_failure_unix_ms, now_unix_ms)}};
  } else if (audit.runs > 0) {
    last = {{"result", audit.last_mismatches == 0 ? "clean" : "corrected"},
            {"unix_ms", audit.last_unix_ms},
            {"age_seconds", AgeSeconds(audit.last_unix_ms, now_unix_ms)},
            {"keys", audit.last_keys},
            {"mismatches", audit.last_mismatches},
            {"duration_seconds", audit.last_seconds}};
  }
  return {{"runs", audit.runs},
          {"failures", audit.failures},
          {"mismatches", audit.mismatches},
          {"last", last}};
}

json LastDiff(int64_t unix_ms, uint64_t repaired, int64_t now_unix_ms) {
  if (unix_ms == 0) return nullptr;
  return {{"unix_ms", unix_ms},
          {"age_seconds", AgeSeconds(unix_ms, now_unix_ms)},
          {"keys_repaired", repaired}};
}

// A server's sessions: its followers (each with its lag behind the server),
// the other peers, and how many followers stream.
struct Sessions {
  json followers = json::array();
  json others = json::array();
  size_t streaming = 0;
};

Sessions SessionsOf(const net::MasterServerStats& server) {
  Sessions out;
  for (const net::SessionStats& s : server.sessions) {
    if (s.role != Role::kFollower) {
      out.others.push_back({{"peer", s.peer}, {"role", RoleName(s.role)}});
      continue;
    }
    if (s.streaming) ++out.streaming;
    out.followers.push_back({{"peer", s.peer},
                             {"state", s.streaming ? "streaming" : "handshake"},
                             {"applied_seq", s.applied_seq},
                             {"acked_seq", s.acked_seq},
                             {"lag_sequences", s.lag_seqs},
                             {"lag_seconds", static_cast<double>(s.lag_ms) / 1000}});
  }
  return out;
}

// A promoted master's earlier identities; null for any other master.
json Lineage(const std::vector<LineageLink>& lineage) {
  if (lineage.empty()) return nullptr;
  json out = json::array();
  for (const LineageLink& link : lineage) {
    out.push_back(
        {{"master_id", link.master_id}, {"master_seq", link.master_seq}, {"seq", link.seq}});
  }
  return out;
}

// A follower serving followers of its own: null when it does not.
json RelayJson(const std::optional<plugin::RelayStatus>& relay) {
  if (!relay) return nullptr;
  Sessions sessions = SessionsOf(relay->server);
  return {{"port", relay->port},
          {"sequence", relay->seq},
          {"available", relay->unavailable.empty()},
          {"unavailable", relay->unavailable},
          {"connections", relay->server.connections},
          {"connected_followers", sessions.streaming},
          {"followers", sessions.followers},
          {"other_sessions", sessions.others}};
}

}  // namespace

json MasterStatusJson(const plugin::MasterStatus& status, const std::string& master_id,
                      const DaemonFacts& facts, const DiskSpace& disk, int64_t now_unix_ms) {
  const net::MasterServerStats& server = status.server;
  Sessions sessions = SessionsOf(server);
  json& followers = sessions.followers;
  json& others = sessions.others;
  const size_t streaming = sessions.streaming;
  return {
      {"role", "master"},
      {"version", Version()},
      {"master_id", master_id},
      {"lineage", Lineage(status.lineage)},
      {"sequences", {{"master", status.tailed_seq}, {"database", status.db_seq}}},
      {"tree",
       {{"keys", status.keys},
        {"left_out_keys", status.left_out_keys},
        {"rebuilds", status.rebuilds},
        {"rebuild_pending", status.rebuild_pending}}},
      {"connections", server.connections},
      {"connected_followers", streaming},
      {"followers", followers},
      {"other_sessions", others},
      {"diffs", server.syncs},
      {"last_diff", LastDiff(server.last_sync_unix_ms, server.last_sync_repaired, now_unix_ms)},
      {"audit", Audit(status.audit, now_unix_ms)},
      {"security", Security(facts)},
      {"disk", Disk(facts, disk)},
  };
}

json FollowerStatusJson(const plugin::FollowerStatus& status, const DaemonFacts& facts,
                        const DiskSpace& disk, int64_t now_unix_ms) {
  json clone = nullptr;
  if (status.cloned) clone = {{"bytes", status.clone_bytes}, {"master_seq", status.clone_seq}};
  return {
      {"role", "follower"},
      {"version", Version()},
      {"master_id", status.master_id.empty() ? json(nullptr) : json(status.master_id)},
      {"lineage", nullptr},  // a follower has none: its master does
      {"master",
       {{"address", facts.master_address},
        {"link", status.connected ? "up" : "down"},
        {"connects", status.connects},
        {"reconnects", status.reconnects},
        {"bootstraps", status.bootstraps},
        {"last_start",
         status.connects > 0 ? json(StartModeName(status.last_start)) : json(nullptr)},
        {"last_error", status.last_error}}},
      {"sequences",
       {{"applied", status.applied_seq}, {"master", status.master_seq}, {"lag", status.lag_seqs}}},
      {"lag_seconds", static_cast<double>(status.lag_ms) / 1000},
      {"keys", status.keys},
      {"tree_built", status.tree_built},
      {"clone", clone},
      {"diffs", status.diffs},
      {"last_diff", LastDiff(status.last_diff_unix_ms, status.last_diff_repaired, now_unix_ms)},
      {"audit", Audit(status.audit, now_unix_ms)},
      {"security", Security(facts)},
      {"disk", Disk(facts, disk)},
      {"relay", RelayJson(status.relay)},
  };
}

}  // namespace sdiff::tools
