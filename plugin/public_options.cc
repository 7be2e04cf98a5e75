// Field-by-field conversions between the public options and reports and the
// plugin's nested ones. A field added on either side belongs here too.
#include "plugin/public_options.h"

#include <utility>

namespace sdiff::plugin {
namespace {

sdiff::Progress::Kind ToPublic(Progress::Kind kind) {
  switch (kind) {
    case Progress::Kind::kTreeBuild:
      return sdiff::Progress::Kind::kTreeBuild;
    case Progress::Kind::kBootstrap:
      return sdiff::Progress::Kind::kBootstrap;
    case Progress::Kind::kRepair:
      return sdiff::Progress::Kind::kRepair;
    case Progress::Kind::kClone:
      return sdiff::Progress::Kind::kClone;
  }
  return sdiff::Progress::Kind::kTreeBuild;
}

sdiff::SessionStats::Role ToPublic(Role role) {
  switch (role) {
    case Role::kFollower:
      return sdiff::SessionStats::Role::kFollower;
    case Role::kInspector:
      return sdiff::SessionStats::Role::kInspector;
    case Role::kWriter:
      return sdiff::SessionStats::Role::kWriter;
    case Role::kCloner:
      return sdiff::SessionStats::Role::kCloner;
    case Role::kAuditor:
      return sdiff::SessionStats::Role::kAuditor;
  }
  return sdiff::SessionStats::Role::kFollower;
}

sdiff::FollowerStatus::StartMode ToPublic(StartMode mode) {
  switch (mode) {
    case StartMode::kResume:
      return sdiff::FollowerStatus::StartMode::kResume;
    case StartMode::kDiff:
      return sdiff::FollowerStatus::StartMode::kDiff;
    case StartMode::kBootstrap:
      return sdiff::FollowerStatus::StartMode::kBootstrap;
    case StartMode::kFiles:
      return sdiff::FollowerStatus::StartMode::kFiles;
  }
  return sdiff::FollowerStatus::StartMode::kDiff;
}

net::TlsOptions FromPublic(const sdiff::TlsOptions& tls) {
  net::TlsOptions out;
  out.cert_file = tls.cert_file;
  out.key_file = tls.key_file;
  out.ca_file = tls.ca_file;
  return out;
}

sdiff::AuditStats ToPublic(const AuditStats& stats) {
  sdiff::AuditStats out;
  out.runs = stats.runs;
  out.failures = stats.failures;
  out.mismatches = stats.mismatches;
  out.last_unix_ms = stats.last_unix_ms;
  out.last_seconds = stats.last_seconds;
  out.last_mismatches = stats.last_mismatches;
  return out;
}

}  // namespace

ProgressFn FromPublic(const sdiff::ProgressFn& progress) {
  if (!progress) return {};
  return [progress](const Progress& p) {
    sdiff::Progress out;
    out.kind = ToPublic(p.kind);
    out.done = p.done;
    out.total = p.total;
    out.finished = p.finished;
    progress(out);
  };
}

MasterOptions FromPublic(const sdiff::MasterOptions& options) {
  MasterOptions out;
  out.server.listen = options.listen;
  out.server.secret = options.secret;
  out.server.allow_unauthenticated_remote = options.allow_unauthenticated_remote;
  out.server.tls = FromPublic(options.tls);
  out.server.threads = options.threads;
  out.server.max_connections = options.max_connections;
  out.server.handshake_timeout = options.handshake_timeout;
  out.server.idle_timeout_ms = options.idle_timeout.count();
  out.server.connection.high_water_bytes = options.max_follower_backlog_bytes;
  out.master_id = options.master_id;
  out.poll_interval = options.poll_interval;
  out.resume_window_bytes = options.resume_window_bytes;
  out.bootstrap_min_keys = options.bootstrap_min_keys;
  out.diff_on_connect = options.diff_on_connect;
  out.serve_files = options.serve_files;
  out.allow_writers = options.allow_writers;
  out.sync_writes = options.sync_writes;
  out.min_free_bytes = options.min_free_bytes;
  out.server.min_acks = options.min_acks;
  out.server.ack_timeout = options.ack_timeout;
  out.accept_changes_outside_wal = options.accept_changes_outside_wal;
  out.audit.interval = options.audit_interval;
  out.audit.max_bytes_per_second = options.audit_max_bytes_per_second;
  out.progress = FromPublic(options.progress);
  return out;
}

FollowerOptions FromPublic(const sdiff::FollowerOptions& options) {
  FollowerOptions out;
  out.db_path = options.db_path;
  out.create_if_missing = options.create_if_missing;
  out.sync_writes = options.sync_writes;
  out.min_free_bytes = options.min_free_bytes;
  out.clone_files = options.clone_files;
  out.ledger = options.ledger;
  out.discard = options.discard;
  out.client.master = options.master;
  out.client.secret = options.secret;
  out.client.tls = FromPublic(options.tls);
  out.client.connect_timeout = options.connect_timeout;
  out.client.handshake_timeout = options.handshake_timeout;
  out.client.backoff_initial = options.backoff_initial;
  out.client.backoff_max = options.backoff_max;
  out.client.repair_interval = options.repair_interval;
  out.relay.server.listen = options.listen;
  out.relay.server.secret = options.secret;
  out.relay.server.tls = FromPublic(options.tls);
  out.relay.server.max_connections = options.max_connections;
  out.relay.server.connection.high_water_bytes = options.max_follower_backlog_bytes;
  out.relay.resume_window_bytes = options.resume_window_bytes;
  out.audit.interval = options.audit_interval;
  out.audit.max_bytes_per_second = options.audit_max_bytes_per_second;
  out.progress = FromPublic(options.progress);
  return out;
}

sdiff::MasterStatus ToPublic(const MasterStatus& status) {
  sdiff::MasterStatus out;
  out.tailed_seq = status.tailed_seq;
  out.db_seq = status.db_seq;
  out.master_seq = status.server.master_seq;
  out.keys = status.keys;
  out.root = status.root.ToHex();
  out.rebuilds = status.rebuilds;
  out.rebuild_pending = status.rebuild_pending;
  out.left_out_keys = status.left_out_keys;
  out.audit = ToPublic(status.audit);
  out.connections = status.server.connections;
  out.accepted = status.server.accepted;
  out.rejected = status.server.rejected;
  out.bytes_in = status.server.bytes_in;
  out.bytes_out = status.server.bytes_out;
  out.diffs = status.server.syncs;
  out.keys_repaired = status.server.keys_repaired;
  out.sessions.reserve(status.server.sessions.size());
  for (const net::SessionStats& s : status.server.sessions) {
    sdiff::SessionStats session;
    session.peer = s.peer;
    session.role = ToPublic(s.role);
    session.streaming = s.streaming;
    session.applied_seq = s.applied_seq;
    session.acked_seq = s.acked_seq;
    session.lag_seqs = s.lag_seqs;
    session.lag_ms = s.lag_ms;
    session.input_buffer_bytes = s.input_buffer_bytes;
    out.sessions.push_back(std::move(session));
  }
  return out;
}

sdiff::FollowerStatus ToPublic(const FollowerStatus& status) {
  sdiff::FollowerStatus out;
  out.connected = status.connected;
  out.master_seq = status.master_seq;
  out.applied_seq = status.applied_seq;
  out.lag_seqs = status.lag_seqs;
  out.lag_ms = status.lag_ms;
  out.bytes_in = status.bytes_in;
  out.bytes_out = status.bytes_out;
  out.last_diff_unix_ms = status.last_diff_unix_ms;
  out.last_diff_repaired = status.last_diff_repaired;
  out.diffs = status.diffs;
  out.connects = status.connects;
  out.reconnects = status.reconnects;
  out.last_start = ToPublic(status.last_start);
  out.last_error = status.last_error;
  out.master_id = status.master_id;
  out.keys = status.keys;
  out.tree_built = status.tree_built;
  out.cloned = status.cloned;
  out.clone_bytes = status.clone_bytes;
  out.clone_seq = status.clone_seq;
  out.audit = ToPublic(status.audit);
  return out;
}

sdiff::AuditResult ToPublic(const AuditResult& result) {
  sdiff::AuditResult out;
  out.seq = result.seq;
  out.keys = result.keys;
  out.mismatches = result.mismatches;
  out.examples = result.examples;
  out.seconds = result.seconds;
  return out;
}

}  // namespace sdiff::plugin
