// The --metrics endpoint on loopback, and the text the daemons serve on it.
#include <gtest/gtest.h>

#include <atomic>
#include <string>

#include "engine/wire.h"
#include "net/metrics_server.h"
#include "sdiff/version.h"
#include "test/support/descriptors.h"
#include "test/support/http_get.h"
#include "test/support/log_capture.h"
#include "test/support/wait.h"
#include "tools/metrics_text.h"
#include "tools/status_json.h"

namespace sdiff {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 10s;

// A session as the master lists it: one that has not begun streaming yet.
net::SessionStats SessionOf(std::string peer) {
  net::SessionStats session;
  session.peer = std::move(peer);
  return session;
}

// A follower streaming from the master, `lag_seqs` (and `lag_ms`) behind it.
net::SessionStats StreamingFollower(std::string peer, uint64_t applied_seq, uint64_t lag_seqs,
                                    int64_t lag_ms) {
  net::SessionStats follower = SessionOf(std::move(peer));
  follower.streaming = true;
  follower.applied_seq = applied_seq;
  follower.acked_seq = applied_seq;
  follower.lag_seqs = lag_seqs;
  follower.lag_ms = lag_ms;
  return follower;
}

TEST(MetricsServerTest, ServesTheCallbacksTextOnMetrics) {
  std::atomic<int> calls{0};
  std::unique_ptr<net::MetricsServer> server;
  Status s = net::MetricsServer::Start(
      "127.0.0.1:0",
      [&] {
        ++calls;
        return std::string("# TYPE x gauge\nx 1\n");
      },
      &server);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_NE(server->port(), 0);

  testing::HttpResponse r = testing::HttpGet(server->port(), "/metrics", kDeadline);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "# TYPE x gauge\nx 1\n");
  EXPECT_NE(r.content_type.find("version=0.0.4"), std::string::npos) << r.content_type;
  EXPECT_EQ(calls, 1);

  // Each scrape asks again; a query string is not part of the path.
  r = testing::HttpGet(server->port(), "/metrics?x=1", kDeadline);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(calls, 2);
}

TEST(MetricsServerTest, ServesEachRouteWithItsContentType) {
  std::unique_ptr<net::MetricsServer> server;
  net::MetricsServer::Routes routes = {
      {"/metrics", {net::MetricsServer::kPrometheusText, [] { return std::string("x 1\n"); }}},
      {"/status", {"application/json", [] { return std::string("{\"a\":1}"); }}},
  };
  ASSERT_TRUE(net::MetricsServer::Start("127.0.0.1:0", routes, &server).ok());
  testing::HttpResponse r = testing::HttpGet(server->port(), "/status", kDeadline);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "{\"a\":1}");
  r = testing::HttpGet(server->port(), "/metrics", kDeadline);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.content_type, net::MetricsServer::kPrometheusText);
  EXPECT_EQ(r.body, "x 1\n");
  r = testing::HttpGet(server->port(), "/status/x", kDeadline);
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("/status"), std::string::npos) << r.body;  // says what exists
}

TEST(MetricsServerTest, OtherPathsAreNotFound) {
  std::unique_ptr<net::MetricsServer> server;
  ASSERT_TRUE(net::MetricsServer::Start(
                  "127.0.0.1:0", [] { return std::string("x 1\n"); }, &server)
                  .ok());
  for (const char* path : {"/", "/metric", "/metrics/more", "/favicon.ico"}) {
    testing::HttpResponse r = testing::HttpGet(server->port(), path, kDeadline);
    EXPECT_EQ(r.status, 404) << path << ": " << r.error;
  }
}

// An accept that fails for want of a file descriptor is retried after a
// backoff, not at once in a loop, logged once, and scrapes are served again
// when descriptors are free.
TEST(MetricsServerTest, AcceptFailuresAreRetriedWithBackoffNotInABusyLoop) {
  if (testing::kDescriptorsNeededBySanitizer) {
    GTEST_SKIP() << "UBSan needs descriptors to check types (descriptors.h)";
  }
  auto log = std::make_shared<testing::LogCapture>();
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(testing::LogCapture::Logger(log));
  std::unique_ptr<net::MetricsServer> server;
  ASSERT_TRUE(net::MetricsServer::Start(
                  "127.0.0.1:0", [] { return std::string("x 1\n"); }, &server)
                  .ok());
  testing::DescriptorExhaustion exhaustion;
  ASSERT_TRUE(exhaustion.exhausted());
  // The kernel completes the connection; the server's accept cannot take it.
  ASSERT_TRUE(exhaustion.ConnectQueued(server->port())) << errno;
  ASSERT_TRUE(testing::WaitUntil([&] { return log->Count("accept failed") > 0; }, kDeadline));

  // The window measured, not a wait for an event.
  std::chrono::milliseconds cpu = testing::CpuTimeOver(600ms);
  EXPECT_LT(cpu, 150ms) << "CPU spent while accepts failed: " << cpu.count() << " ms";
  EXPECT_EQ(log->Count("accept failed"), 1u);  // once per episode

  exhaustion.Release();
  testing::HttpResponse r = testing::HttpGet(server->port(), "/metrics", kDeadline);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(log->Count("accepting again"), 1u);
  server.reset();
  spdlog::set_default_logger(previous);
}

TEST(MetricsServerTest, BadAddressesAreErrors) {
  std::unique_ptr<net::MetricsServer> server;
  auto text = [] { return std::string(); };
  EXPECT_FALSE(net::MetricsServer::Start("no-port", text, &server).ok());
  EXPECT_FALSE(net::MetricsServer::Start("127.0.0.1:99999", text, &server).ok());
  // A port already taken.
  std::unique_ptr<net::MetricsServer> first;
  ASSERT_TRUE(net::MetricsServer::Start("127.0.0.1:0", text, &first).ok());
  Status s = net::MetricsServer::Start("127.0.0.1:" + std::to_string(first->port()), text, &server);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(server, nullptr);
}

TEST(MetricsTextTest, MasterListsEachStreamingFollower) {
  plugin::MasterStatus status;
  status.tailed_seq = 42;
  status.keys = 7;
  status.left_out_keys = 1;
  status.server.bytes_out = 1000;
  status.server.rejected = 2;
  status.server.sessions = {StreamingFollower("127.0.0.1:5000", 40, 2, 1500),
                            SessionOf("127.0.0.1:5001")};
  status.server.connections = 2;

  std::string text = tools::MasterMetrics(status);
  for (const char* line : {
           "sdiff_info{role=\"master\"} 1\n",
           "sdiff_master_sequence 42\n",
           "sdiff_tree_keys 7\n",
           "sdiff_tree_left_out_keys 1\n",
           "sdiff_connected_followers 1\n",
           "sdiff_connections 2\n",
           "sdiff_follower_applied_sequence{peer=\"127.0.0.1:5000\"} 40\n",
           "sdiff_follower_acked_sequence{peer=\"127.0.0.1:5000\"} 40\n",
           "sdiff_follower_lag_sequences{peer=\"127.0.0.1:5000\"} 2\n",
           "sdiff_follower_lag_seconds{peer=\"127.0.0.1:5000\"} 1.5\n",
           "sdiff_bytes_sent_total 1000\n",
           "sdiff_connections_rejected_total 2\n",
           "# TYPE sdiff_bytes_sent_total counter\n",
           "# TYPE sdiff_follower_applied_sequence gauge\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
  EXPECT_EQ(text.find("5001"), std::string::npos) << "a handshake is not a follower yet";
  // Every sample's metric has its HELP and TYPE.
  size_t helps = 0, types = 0;
  for (size_t at = 0; (at = text.find("# HELP ", at)) != std::string::npos; ++at) ++helps;
  for (size_t at = 0; (at = text.find("# TYPE ", at)) != std::string::npos; ++at) ++types;
  EXPECT_EQ(helps, types);
  EXPECT_GT(helps, 10u);
}

TEST(MetricsTextTest, FollowerSaysItsPosition) {
  plugin::FollowerStatus status;
  status.connected = true;
  status.applied_seq = 9;
  status.master_seq = 12;
  status.lag_seqs = 3;
  status.reconnects = 4;
  status.lag_ms = 1500;
  status.bytes_in = 1000;
  status.bytes_out = 20;
  std::string text = tools::FollowerMetrics(status);
  for (const char* line :
       {"sdiff_info{role=\"follower\"} 1\n", "sdiff_connected 1\n", "sdiff_applied_sequence 9\n",
        "sdiff_master_sequence 12\n", "sdiff_lag_sequences 3\n", "sdiff_reconnects_total 4\n",
        "sdiff_lag_seconds 1.5\n", "sdiff_bytes_received_total 1000\n",
        "sdiff_bytes_sent_total 20\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
}

TEST(MetricsTextTest, AFollowerServingFollowersListsThemWithTheirLagBehindIt) {
  plugin::FollowerStatus status;
  status.applied_seq = 50;
  status.master_seq = 52;
  status.lag_seqs = 2;  // end to end: behind the origin master
  EXPECT_EQ(tools::FollowerMetrics(status).find("sdiff_relay"), std::string::npos)
      << "no relay, no relay metrics";
  plugin::RelayStatus relay;
  relay.seq = 50;
  relay.server.sessions = {StreamingFollower("127.0.0.1:6000", 47, 3, 250)};
  relay.server.connections = 1;
  status.relay = relay;
  std::string text = tools::FollowerMetrics(status);
  for (const char* line : {
           "sdiff_lag_sequences 2\n",
           "sdiff_relay_sequence 50\n",
           "sdiff_relay_available 1\n",
           "sdiff_connected_followers 1\n",
           "sdiff_follower_applied_sequence{peer=\"127.0.0.1:6000\"} 47\n",
           "sdiff_follower_lag_sequences{peer=\"127.0.0.1:6000\"} 3\n",
           "sdiff_follower_lag_seconds{peer=\"127.0.0.1:6000\"} 0.25\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
  }
  status.relay->unavailable = "not yet";
  EXPECT_NE(tools::FollowerMetrics(status).find("sdiff_relay_available 0\n"), std::string::npos);
}

TEST(MetricsTextTest, BothRolesReportTheSelfAudit) {
  plugin::AuditStats audit;
  audit.runs = 3;
  audit.failures = 1;
  audit.mismatches = 20;
  audit.last_mismatches = 0;
  audit.last_unix_ms = 1'700'000'000'500;
  audit.last_seconds = 2.5;
  plugin::MasterStatus master;
  master.audit = audit;
  plugin::FollowerStatus follower;
  follower.audit = audit;
  for (const std::string& text : {tools::MasterMetrics(master), tools::FollowerMetrics(follower)}) {
    for (const char* line : {"# TYPE sdiff_audit_mismatches_total counter\n",
                             "sdiff_audit_mismatches_total 20\n", "sdiff_audits_total 3\n",
                             "sdiff_audit_failures_total 1\n", "sdiff_audit_last_mismatches 0\n",
                             "sdiff_audit_last_run_timestamp_seconds 1700000000.5\n",
                             "sdiff_audit_last_duration_seconds 2.5\n"}) {
      EXPECT_NE(text.find(line), std::string::npos) << line << "in:\n" << text;
    }
  }
}

TEST(MetricsTextTest, DiskAndBootstrapsAreExported) {
  std::string disk = tools::DiskMetrics(tools::DiskSpace{true, 1000, 5000}, 300);
  for (const char* line :
       {"sdiff_disk_free_bytes 1000\n", "sdiff_disk_capacity_bytes 5000\n",
        "sdiff_disk_reserve_bytes 300\n", "# TYPE sdiff_disk_free_bytes gauge\n"}) {
    EXPECT_NE(disk.find(line), std::string::npos) << line << "in:\n" << disk;
  }
  EXPECT_EQ(tools::DiskMetrics(tools::DiskSpace{}, 300), "") << "an unreadable disk: no sample";
  plugin::FollowerStatus follower;
  follower.bootstraps = 3;
  std::string text = tools::FollowerMetrics(follower);
  EXPECT_NE(text.find("# TYPE sdiff_bootstraps_total counter\nsdiff_bootstraps_total 3\n"),
            std::string::npos)
      << text;
  plugin::MasterStatus master;
  master.server.last_sync_unix_ms = 1'700'000'000'250;
  text = tools::MasterMetrics(master);
  EXPECT_NE(text.find("sdiff_last_diff_timestamp_seconds 1700000000.25\n"), std::string::npos)
      << text;
}

constexpr int64_t kNowMs = 1'700'000'010'000;

TEST(StatusJsonTest, MasterSaysItsSequencesFollowersAndSettings) {
  plugin::MasterStatus status;
  status.tailed_seq = 42;
  status.db_seq = 43;
  status.keys = 7;
  status.rebuilds = 1;
  status.server.connections = 3;
  status.server.syncs = 2;
  status.server.last_sync_unix_ms = kNowMs - 4000;
  status.server.last_sync_repaired = 5;
  net::SessionStats writer = SessionOf("127.0.0.1:5002");
  writer.role = Role::kWriter;
  writer.streaming = true;
  status.server.sessions = {StreamingFollower("127.0.0.1:5000", 40, 2, 1500),
                            SessionOf("127.0.0.1:5001"), writer};
  status.audit.runs = 1;
  status.audit.last_unix_ms = kNowMs - 2000;
  status.audit.last_keys = 7;
  status.audit.last_mismatches = 1;
  status.audit.mismatches = 1;
  tools::DaemonFacts facts{"/srv/data", "", true, true, true, 256 << 20};
  tools::DiskSpace disk{true, 100 << 20, 1 << 30};

  auto j = tools::MasterStatusJson(status, "db-id", facts, disk, kNowMs);
  EXPECT_EQ(j.begin().key(), "role") << "role comes first, as Redis's INFO has it";
  EXPECT_EQ(j["role"], "master");
  EXPECT_EQ(j["master_id"], "db-id");
  EXPECT_TRUE(j["lineage"].is_null());
  EXPECT_EQ(j["version"]["sdiff"], kVersion);
  EXPECT_EQ(j["version"]["protocol"], wire::kProtocolVersion);
  EXPECT_EQ(j["sequences"]["master"], 42);
  EXPECT_EQ(j["sequences"]["database"], 43);
  EXPECT_EQ(j["tree"]["keys"], 7);
  EXPECT_EQ(j["tree"]["rebuilds"], 1);
  EXPECT_EQ(j["connections"], 3);
  EXPECT_EQ(j["connected_followers"], 1);
  ASSERT_EQ(j["followers"].size(), 2u) << j.dump(2);
  EXPECT_EQ(j["followers"][0]["peer"], "127.0.0.1:5000");
  EXPECT_EQ(j["followers"][0]["state"], "streaming");
  EXPECT_EQ(j["followers"][0]["applied_seq"], 40);
  EXPECT_EQ(j["followers"][0]["acked_seq"], 40);
  EXPECT_EQ(j["followers"][0]["lag_sequences"], 2);
  EXPECT_EQ(j["followers"][0]["lag_seconds"], 1.5);
  EXPECT_EQ(j["followers"][1]["state"], "handshake");
  ASSERT_EQ(j["other_sessions"].size(), 1u);
  EXPECT_EQ(j["other_sessions"][0]["role"], "writer");
  EXPECT_EQ(j["diffs"], 2);
  EXPECT_EQ(j["last_diff"]["keys_repaired"], 5);
  EXPECT_EQ(j["last_diff"]["age_seconds"], 4.0);
  EXPECT_EQ(j["audit"]["last"]["result"], "corrected");
  EXPECT_EQ(j["audit"]["last"]["keys"], 7);
  EXPECT_EQ(j["audit"]["last"]["age_seconds"], 2.0);
  EXPECT_EQ(j["security"]["auth"], "shared-secret");
  EXPECT_EQ(j["security"]["tls"], "verify-peer");
  EXPECT_EQ(j["disk"]["free_bytes"], 100 << 20);
  EXPECT_EQ(j["disk"]["reserve_bytes"], 256 << 20);
  EXPECT_EQ(j["disk"]["below_reserve"], true);
}

TEST(StatusJsonTest, FollowerSaysItsLinkAndPosition) {
  plugin::FollowerStatus status;
  status.master_id = "db-id";
  status.connected = false;
  status.applied_seq = 9;
  status.master_seq = 12;
  status.lag_seqs = 3;
  status.lag_ms = 2500;
  status.connects = 2;
  status.bootstraps = 1;
  status.last_start = StartMode::kResume;
  status.last_error = "connection reset";
  status.audit.last_failed = true;
  status.audit.failures = 1;
  status.audit.last_failure_unix_ms = kNowMs - 1000;
  tools::DaemonFacts facts{"/srv/replica", "10.0.0.1:8123", false, false, false, 0};

  auto j = tools::FollowerStatusJson(status, facts, tools::DiskSpace{}, kNowMs);
  EXPECT_EQ(j["role"], "follower");
  EXPECT_EQ(j["master_id"], "db-id");
  EXPECT_TRUE(j["lineage"].is_null());
  EXPECT_EQ(j["master"]["address"], "10.0.0.1:8123");
  EXPECT_EQ(j["master"]["link"], "down");
  EXPECT_EQ(j["master"]["last_start"], "resume");
  EXPECT_EQ(j["master"]["bootstraps"], 1);
  EXPECT_EQ(j["master"]["last_error"], "connection reset");
  EXPECT_EQ(j["sequences"]["applied"], 9);
  EXPECT_EQ(j["sequences"]["master"], 12);
  EXPECT_EQ(j["sequences"]["lag"], 3);
  EXPECT_EQ(j["lag_seconds"], 2.5);
  EXPECT_TRUE(j["last_diff"].is_null()) << "no diff yet";
  EXPECT_TRUE(j["clone"].is_null());
  EXPECT_EQ(j["audit"]["last"]["result"], "failed");
  EXPECT_EQ(j["audit"]["last"]["age_seconds"], 1.0);
  EXPECT_EQ(j["security"]["auth"], "none");
  EXPECT_EQ(j["security"]["tls"], "off");
  EXPECT_TRUE(j["disk"]["free_bytes"].is_null()) << "an unreadable disk is null, not 0";
  EXPECT_EQ(j["disk"]["below_reserve"], false);

  // Never connected: no start mode; a fresh replica has no master id yet.
  j = tools::FollowerStatusJson(plugin::FollowerStatus{}, facts, tools::DiskSpace{}, kNowMs);
  EXPECT_TRUE(j["master"]["last_start"].is_null());
  EXPECT_TRUE(j["master_id"].is_null());
  EXPECT_TRUE(j["audit"]["last"].is_null());
}

}  // namespace
}  // namespace sdiff
