// Formatting of the metrics page; the numbers come from the plugin's status.
#include "tools/metrics_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

namespace sdiff::tools {
namespace {

// Builds one exposition: each metric's HELP and TYPE, then its samples.
class Exposition {
 public:
  // `type`: "gauge" or "counter".
  void Describe(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  template <typename T>
  void Sample(std::string_view name, T value, std::string_view labels = {}) {
    if (labels.empty()) {
      fmt::format_to(std::back_inserter(out_), "{} {}\n", name, value);
    } else {
      fmt::format_to(std::back_inserter(out_), "{}{{{}}} {}\n", name, labels, value);
    }
  }
  template <typename T>
  void One(std::string_view name, std::string_view type, std::string_view help, T value) {
    Describe(name, type, help);
    Sample(name, value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// A label value, escaped as the format requires.
std::string Quoted(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// The self-audit's figures, the same for a master and a follower.
void AuditMetrics(const plugin::AuditStats& audit, Exposition* e) {
  e->One("sdiff_audits_total", "counter",
         "Self-audits of the merkle tree against the database that finished.", audit.runs);
  e->One("sdiff_audit_failures_total", "counter",
         "Self-audits that could not finish (the log says why).", audit.failures);
  e->One("sdiff_audit_mismatches_total", "counter",
         "Keys whose tree entry differed from the database, found and corrected by self-audits.",
         audit.mismatches);
  e->One("sdiff_audit_last_mismatches", "gauge", "Keys the last self-audit corrected.",
         audit.last_mismatches);
  e->One("sdiff_audit_last_run_timestamp_seconds", "gauge",
         "When the last self-audit finished, in seconds since the epoch; 0: none yet.",
         audit.last_unix_ms / 1000.0);
  e->One("sdiff_audit_last_duration_seconds", "gauge", "How long the last self-audit took.",
         audit.last_seconds);
}

// The followers a server has and its connections: the same for a master and
// for a follower serving followers of its own (their lag is behind it: one
// hop of a chain).
void FollowerSessionMetrics(const net::MasterServerStats& server, Exposition* e) {
  auto is_follower = [](const net::SessionStats& s) {
    return s.streaming && s.role == Role::kFollower;  // not a handshake, inspector or writer
  };
  e->One("sdiff_connected_followers", "gauge", "Followers connected and streaming.",
         std::count_if(server.sessions.begin(), server.sessions.end(), is_follower));
  e->One("sdiff_connections", "gauge", "Open connections, handshakes included.",
         server.connections);
  // A gauge with one sample per follower, labelled with its address.
  auto per_follower = [&](std::string_view name, std::string_view help, auto value) {
    e->Describe(name, "gauge", help);
    for (const net::SessionStats& s : server.sessions) {
      if (is_follower(s)) e->Sample(name, value(s), "peer=" + Quoted(s.peer));
    }
  };
  per_follower("sdiff_follower_applied_sequence",
               "A follower's last applied master sequence, from its latest Pong.",
               [](const net::SessionStats& s) { return s.applied_seq; });
  per_follower("sdiff_follower_acked_sequence",
               "The applied sequence once the follower is known to hold every write up to it: "
               "what acknowledged writes (--min-acks) count; 0 until then.",
               [](const net::SessionStats& s) { return s.acked_seq; });
  per_follower("sdiff_follower_lag_sequences",
               "This node's sequence minus the follower's applied sequence (one hop).",
               [](const net::SessionStats& s) { return s.lag_seqs; });
  per_follower("sdiff_follower_lag_seconds",
               "Age of the oldest write the follower had not applied at its latest Pong (one hop).",
               [](const net::SessionStats& s) { return static_cast<double>(s.lag_ms) / 1000; });
  e->One("sdiff_connections_accepted_total", "counter", "Connections given a session.",
         server.accepted);
  e->One("sdiff_connections_rejected_total", "counter",
         "Connections refused or dropped: limits, failed or timed-out handshakes, slow followers.",
         server.rejected);
}

}  // namespace

std::string MasterMetrics(const plugin::MasterStatus& status) {
  const net::MasterServerStats& server = status.server;
  Exposition e;
  e.Describe("sdiff_info", "gauge", "What this process is: role=\"master\" or \"follower\".");
  e.Sample("sdiff_info", 1, "role=\"master\"");
  e.One("sdiff_master_sequence", "gauge", "Last master sequence in the tree and the stream.",
        status.tailed_seq);
  e.One("sdiff_db_sequence", "gauge", "The database's latest sequence.", status.db_seq);
  e.One("sdiff_tree_keys", "gauge", "Keys in the master's merkle tree.", status.keys);
  e.One("sdiff_tree_left_out_keys", "gauge",
        "Keys left out of the tree: their key hash collides with a lesser key's.",
        status.left_out_keys);
  e.One("sdiff_tree_rebuilds_total", "counter",
        "Trees rebuilt from a snapshot after a WAL gap or an ingested file.", status.rebuilds);
  FollowerSessionMetrics(server, &e);
  e.One("sdiff_bytes_sent_total", "counter", "Bytes sent to peers.", server.bytes_out);
  e.One("sdiff_bytes_received_total", "counter", "Bytes received from peers.", server.bytes_in);
  e.One("sdiff_diffs_total", "counter", "Diffs completed with followers.", server.syncs);
  e.One("sdiff_last_diff_timestamp_seconds", "gauge",
        "Unix time the last complete diff with a follower ended; 0 if none yet.",
        static_cast<double>(server.last_sync_unix_ms) / 1000);
  e.One("sdiff_keys_repaired_total", "counter", "Keys sent to followers by diffs.",
        server.keys_repaired);
  AuditMetrics(status.audit, &e);
  return e.Take();
}

std::string FollowerMetrics(const plugin::FollowerStatus& status) {
  Exposition e;
  e.Describe("sdiff_info", "gauge", "What this process is: role=\"master\" or \"follower\".");
  e.Sample("sdiff_info", 1, "role=\"follower\"");
  e.One("sdiff_connected", "gauge", "1 while streaming from the master, else 0.",
        status.connected ? 1 : 0);
  e.One("sdiff_applied_sequence", "gauge", "Last master sequence applied to the replica.",
        status.applied_seq);
  e.One(
      "sdiff_master_sequence", "gauge",
      "The origin master's newest sequence this follower heard of (through a chain, as passed on).",
      status.master_seq);
  e.One("sdiff_lag_sequences", "gauge",
        "Master sequence minus applied sequence: behind the origin master, end to end through "
        "a chain.",
        status.lag_seqs);
  e.One("sdiff_lag_seconds", "gauge",
        "How long the replica has been behind the newest origin master sequence it heard of.",
        static_cast<double>(status.lag_ms) / 1000);
  e.One("sdiff_bytes_received_total", "counter", "Bytes received from the master.",
        status.bytes_in);
  e.One("sdiff_bytes_sent_total", "counter", "Bytes sent to the master.", status.bytes_out);
  e.One("sdiff_keys", "gauge", "Keys in the replicated column families.", status.keys);
  e.One("sdiff_diffs_total", "counter", "Diffs completed since the follower started.",
        status.diffs);
  e.One("sdiff_last_diff_keys_repaired", "gauge", "Keys the last complete diff repaired.",
        status.last_diff_repaired);
  e.One("sdiff_last_diff_timestamp_seconds", "gauge",
        "Unix time the last complete diff ended; 0 if none yet.",
        static_cast<double>(status.last_diff_unix_ms) / 1000);
  e.One("sdiff_connects_total", "counter", "Handshakes completed with the master.",
        status.connects);
  e.One("sdiff_bootstraps_total", "counter",
        "Connections the master began by sending every key (the replica was too far behind).",
        status.bootstraps);
  e.One("sdiff_reconnects_total", "counter", "Connection attempts after the first.",
        status.reconnects);
  AuditMetrics(status.audit, &e);
  if (status.relay) {
    const plugin::RelayStatus& relay = *status.relay;
    e.One("sdiff_relay_sequence", "gauge",
          "Last master sequence relayed to followers of this follower.", relay.seq);
    e.One("sdiff_relay_available", "gauge",
          "1 while this follower serves followers of its own, 0 while it refuses them.",
          relay.unavailable.empty() ? 1 : 0);
    FollowerSessionMetrics(relay.server, &e);
  }
  return e.Take();
}

std::string DiskMetrics(const DiskSpace& disk, uint64_t reserve_bytes) {
  if (!disk.known) return {};
  Exposition e;
  e.One("sdiff_disk_free_bytes", "gauge",
        "Bytes free (for unprivileged users) on the disk holding the database.", disk.free_bytes);
  e.One("sdiff_disk_capacity_bytes", "gauge", "Size of the file system holding the database.",
        disk.capacity_bytes);
  e.One("sdiff_disk_reserve_bytes", "gauge",
        "Free bytes kept (--min-free-mb): below it a follower stops applying and a master "
        "refuses writes through it; 0: no reserve.",
        reserve_bytes);
  return e.Take();
}

}  // namespace sdiff::tools
