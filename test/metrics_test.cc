// The --metrics endpoint on loopback, and the text the daemons serve on it.
#include <gtest/gtest.h>

#include <atomic>

#include "net/metrics_server.h"
#include "test/support/descriptors.h"
#include "test/support/http_get.h"
#include "test/support/log_capture.h"
#include "test/support/wait.h"
#include "tools/metrics_text.h"

namespace sdiff {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 10s;

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
  net::SessionStats follower;
  follower.peer = "127.0.0.1:5000";
  follower.streaming = true;
  follower.applied_seq = 40;
  follower.lag_seqs = 2;
  follower.lag_ms = 1500;
  net::SessionStats handshaking;
  handshaking.peer = "127.0.0.1:5001";
  status.server.sessions = {follower, handshaking};
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

}  // namespace
}  // namespace sdiff
