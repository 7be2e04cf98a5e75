// The programs people run, spawned as processes: the demo, the daemons'
// replication and clean stop, and their one-line errors and exit codes.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "engine/wire.h"
#include "sdiff/version.h"
#include "test/support/child_process.h"
#include "test/support/daemon_test.h"
#include "test/support/http_get.h"
#include "test/support/wait.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

// The port in a daemon's "metrics on port N" line, once it printed it; 0 if not.
uint16_t MetricsPort(ChildProcess& daemon) {
  auto printed = [](const std::string& out, const std::string&) {
    size_t at = out.find("metrics on port ");
    return at != std::string::npos && out.find('\n', at) != std::string::npos;
  };
  if (!daemon.WaitForOutput(printed, kDeadline)) return 0;
  return static_cast<uint16_t>(
      std::stoi(daemon.out().substr(daemon.out().find("metrics on port ") + 16)));
}

// The value of the sample `name` (with its labels, if any) in a metrics page.
std::optional<double> Sample(const std::string& page, const std::string& name) {
  for (size_t at = 0; at < page.size();) {
    size_t end = page.find('\n', at);
    if (end == std::string::npos) end = page.size();
    std::string_view line(page.data() + at, end - at);
    if (line.substr(0, name.size()) == name && line.size() > name.size() &&
        line[name.size()] == ' ') {
      return std::stod(std::string(line.substr(name.size() + 1)));
    }
    at = end + 1;
  }
  return std::nullopt;
}

class ToolsTest : public DaemonTest {
 protected:
  void WriteDb(const std::string& path, int keys) { DaemonTest::WriteDb(path, NumberedKeys(keys)); }
};

TEST_F(ToolsTest, DemoEndsWithEqualDatabases) {
  RunResult r = RunProgram({ProgramPath("sdiff-demo")}, kDeadline);
  ASSERT_TRUE(r.code.has_value()) << "sdiff-demo did not finish";
  EXPECT_EQ(*r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("key=stale key4=value4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("follower equals master: yes"), std::string::npos) << r.out;
}

TEST_F(ToolsTest, BadFlagsExitTwoWithOneLine) {
  for (const char* program : {"sdiff-rocks-master", "sdiff-rocks-follower", "sdiff-demo"}) {
    RunResult r = RunProgram({ProgramPath(program), "--no-such-flag"}, kDeadline);
    ASSERT_TRUE(r.code.has_value()) << program;
    EXPECT_EQ(*r.code, 2) << program << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << program << ": " << r.err;
  }
}

TEST_F(ToolsTest, VersionIsOneLineOfTheLibraryAndProtocolVersions) {
  for (const char* program :
       {"sdiff-rocks-master", "sdiff-rocks-follower", "sdiff-ldb", "sdiff-demo"}) {
    RunResult r = RunProgram({ProgramPath(program), "--version"}, kDeadline);
    ASSERT_TRUE(r.code.has_value()) << program;
    EXPECT_EQ(*r.code, 0) << program << ": " << r.err;
    EXPECT_EQ(r.out, std::string(program) + " " + kVersion + " (protocol " +
                         std::to_string(wire::kProtocolVersion) + ")\n");
    EXPECT_EQ(r.err, "") << program;
  }
}

TEST_F(ToolsTest, BadAuditFlagsExitTwoWithOneLine) {
  const std::vector<std::vector<std::string>> daemons = {
      {ProgramPath("sdiff-rocks-master"), "--db=/nonexistent"},
      {ProgramPath("sdiff-rocks-follower"), "--db=/nonexistent", "--master=127.0.0.1:1"}};
  for (const auto& daemon : daemons) {
    const std::string& program = daemon[0];
    for (const char* flag : {"--audit-interval=-1", "--audit-rate-mb=fast"}) {
      std::vector<std::string> argv = daemon;
      argv.push_back(flag);
      RunResult r = RunProgram(argv, kDeadline);
      ASSERT_TRUE(r.code.has_value()) << program;
      EXPECT_EQ(*r.code, 2) << program << " " << flag << ": " << r.err;
      EXPECT_EQ(Lines(r.err), 1u) << program << " " << flag << ": " << r.err;
      EXPECT_NE(r.err.find("audit"), std::string::npos) << r.err;
    }
  }
}

// sdiff-ldb --timeout bounds a whole command against a master: one that
// accepts the connection and never says a word still ends it, on time, with
// one line and exit 2. Each command kind: an audit, a write, a diff.
TEST_F(ToolsTest, LdbTimeoutEndsACommandAgainstASilentMaster) {
  // Listening, never accepting: the kernel completes each connection, and
  // nothing is ever sent on it.
  int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(silent, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string master = "--master=127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  WriteDb(dir_ + "/local", 3);
  const std::vector<std::vector<std::string>> commands = {
      {"audit"}, {"put", "k", "v"}, {"diff", "--db=" + dir_ + "/local"}};
  for (const auto& command : commands) {
    std::vector<std::string> argv = {ProgramPath("sdiff-ldb"), master, "--timeout=1"};
    argv.insert(argv.end(), command.begin(), command.end());
    auto start = std::chrono::steady_clock::now();
    RunResult r = RunProgram(argv, kDeadline);
    auto took = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(r.code.has_value()) << command[0] << " did not stop";
    EXPECT_EQ(*r.code, 2) << command[0] << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << command[0] << ": " << r.err;
    EXPECT_NE(r.err.find("did not finish within"), std::string::npos)
        << command[0] << ": " << r.err;
    EXPECT_GE(took, 900ms) << command[0];
    EXPECT_LT(took, 5s) << command[0];
  }
  ::close(silent);

  RunResult local = RunProgram(
      {ProgramPath("sdiff-ldb"), "--db=" + dir_ + "/local", "--timeout=1", "scan"}, kDeadline);
  ASSERT_TRUE(local.code.has_value());
  EXPECT_EQ(*local.code, 2) << local.err;  // it bounds commands against a master only
  EXPECT_NE(local.err.find("--master"), std::string::npos) << local.err;
  for (const char* bad : {"--timeout=0", "--timeout=-1", "--timeout=soon"}) {
    RunResult r = RunProgram({ProgramPath("sdiff-ldb"), master, bad, "audit"}, kDeadline);
    ASSERT_TRUE(r.code.has_value()) << bad;
    EXPECT_EQ(*r.code, 2) << bad << ": " << r.err;
    EXPECT_EQ(r.err, "sdiff-ldb: --timeout: must be a number of seconds above 0\n") << bad;
  }
}

TEST_F(ToolsTest, MissingOrLockedDatabaseIsOneLine) {
  RunResult missing = RunProgram(
      {ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/nowhere", "--listen=127.0.0.1:0"},
      kDeadline);
  ASSERT_TRUE(missing.code.has_value());
  EXPECT_EQ(*missing.code, 2);  // what the user gave is wrong
  EXPECT_EQ(Lines(missing.err), 1u) << missing.err;
  EXPECT_NE(missing.err.find(dir_ + "/nowhere"), std::string::npos) << missing.err;

  WriteDb(dir_ + "/held", 1);
  rocksdb::DB* holder = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_ + "/held", &holder).ok());
  RunResult locked = RunProgram(
      {ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/held", "--listen=127.0.0.1:0"},
      kDeadline);
  delete holder;
  ASSERT_TRUE(locked.code.has_value());
  EXPECT_EQ(*locked.code, 1);  // a runtime failure: another process holds it
  EXPECT_EQ(Lines(locked.err), 1u) << locked.err;
  EXPECT_NE(locked.err.find("in use by another process"), std::string::npos) << locked.err;
}

TEST_F(ToolsTest, DaemonsReplicateAndStopCleanly) {
  WriteDb(dir_ + "/master", 100);
  uint16_t port = 0;
  auto master = StartMaster(dir_ + "/master", {}, &port);
  ASSERT_NE(port, 0) << master->err();
  auto follower =
      ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
                           "--master=127.0.0.1:" + std::to_string(port)});
  ASSERT_TRUE(follower);
  Contents expected;
  for (int i = 0; i < 100; ++i) expected["key" + std::to_string(i)] = "value" + std::to_string(i);
  auto end = std::chrono::steady_clock::now() + kDeadline;
  bool equal = false;
  while (!equal && std::chrono::steady_clock::now() < end) {
    follower->WaitForOutput([](const std::string&, const std::string&) { return false; }, 100ms);
    equal = ReadSecondary(dir_ + "/follower") == expected;
  }
  EXPECT_TRUE(equal) << follower->err();
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  EXPECT_NE(follower->err().find("connected to master"), std::string::npos) << follower->err();
}

TEST_F(ToolsTest, MetricsShowTheFollowerCaughtUpWithTheMaster) {
  WriteDb(dir_ + "/master", 100);
  uint16_t port = 0;
  auto master = StartMaster(dir_ + "/master", {"--metrics=127.0.0.1:0"}, &port);
  ASSERT_NE(port, 0) << master->err();
  uint16_t master_metrics = MetricsPort(*master);
  ASSERT_NE(master_metrics, 0) << master->out() << master->err();
  auto follower =
      ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
                           "--master=127.0.0.1:" + std::to_string(port), "--metrics=127.0.0.1:0"});
  ASSERT_TRUE(follower);
  uint16_t follower_metrics = MetricsPort(*follower);
  ASSERT_NE(follower_metrics, 0) << follower->out() << follower->err();

  // The follower reports its position in each Pong (once a second): poll the
  // master's page until it shows the follower at the master's sequence.
  std::string master_page, follower_page;
  std::optional<double> master_seq, applied;
  auto end = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < end) {
    testing::HttpResponse r = testing::HttpGet(master_metrics, "/metrics", 5s);
    ASSERT_EQ(r.status, 200) << r.error;
    master_page = r.body;
    master_seq = Sample(master_page, "sdiff_master_sequence");
    size_t at = master_page.find("sdiff_follower_applied_sequence{peer=\"127.0.0.1:");
    if (at != std::string::npos) {
      applied = std::stod(master_page.substr(master_page.find("} ", at) + 2));
    }
    if (master_seq && applied && *applied == *master_seq) break;
    follower->WaitForOutput([](const std::string&, const std::string&) { return false; }, 100ms);
  }
  ASSERT_TRUE(master_seq) << master_page;
  EXPECT_GE(*master_seq, 100);  // 100 writes
  ASSERT_TRUE(applied) << master_page;
  EXPECT_EQ(*applied, *master_seq) << master_page;
  EXPECT_EQ(Sample(master_page, "sdiff_info{role=\"master\"}"), 1.0) << master_page;
  EXPECT_EQ(Sample(master_page, "sdiff_connected_followers"), 1.0) << master_page;
  EXPECT_GT(Sample(master_page, "sdiff_bytes_sent_total").value_or(0), 0) << master_page;

  testing::HttpResponse r = testing::HttpGet(follower_metrics, "/metrics", 5s);
  ASSERT_EQ(r.status, 200) << r.error;
  follower_page = r.body;
  EXPECT_EQ(Sample(follower_page, "sdiff_info{role=\"follower\"}"), 1.0) << follower_page;
  EXPECT_EQ(Sample(follower_page, "sdiff_applied_sequence"), master_seq) << follower_page;
  EXPECT_EQ(Sample(follower_page, "sdiff_connected"), 1.0) << follower_page;
  EXPECT_EQ(testing::HttpGet(follower_metrics, "/other", 5s).status, 404);

  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

// GET /status on the metrics port, parsed; null if it is not 200 JSON.
nlohmann::json Status(uint16_t port) {
  testing::HttpResponse r = testing::HttpGet(port, "/status", 5s);
  if (r.status != 200 || r.content_type != "application/json") return nullptr;
  return nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
}

TEST_F(ToolsTest, StatusShowsBothRolesAndTheFollowerCatchingUpAfterWrites) {
  WriteDb(dir_ + "/master", 10);
  WriteSecret(dir_ + "/secret", "a shared secret, long enough");
  const std::string secret = "--secret-file=" + dir_ + "/secret";
  uint16_t port = 0;
  // Audits every second, so that both pages soon have a last audit.
  auto master = StartMaster(
      dir_ + "/master", {"--metrics=127.0.0.1:0", "--allow-writers", secret, "--audit-interval=1"},
      &port);
  ASSERT_NE(port, 0) << master->err();
  uint16_t master_metrics = MetricsPort(*master);
  ASSERT_NE(master_metrics, 0) << master->out() << master->err();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto follower = ChildProcess::Start({ProgramPath("sdiff-rocks-follower"),
                                       "--db=" + dir_ + "/follower", "--master=" + address,
                                       "--metrics=127.0.0.1:0", secret, "--audit-interval=1"});
  ASSERT_TRUE(follower);
  uint16_t follower_metrics = MetricsPort(*follower);
  ASSERT_NE(follower_metrics, 0) << follower->out() << follower->err();

  // Writes through the master while the follower streams.
  std::ofstream(dir_ + "/load.tsv") << "w1\t1\nw2\t2\nw3\t3\n";
  for (int i = 0; i < 3; ++i) {
    RunResult load = RunProgram(
        {ProgramPath("sdiff-ldb"), "--master=" + address, secret, "load", dir_ + "/load.tsv"},
        kDeadline);
    ASSERT_EQ(load.code, 0) << load.err;
  }

  // Followers report their position once a second: poll both pages until
  // the follower's applied sequence, as each side sees it, is the master's.
  nlohmann::json m, f;
  auto caught_up = [&] {
    m = Status(master_metrics);
    f = Status(follower_metrics);
    if (m.is_discarded() || f.is_discarded() || m.is_null() || f.is_null()) return false;
    const auto& followers = m["followers"];
    uint64_t seq = m["sequences"]["master"];
    // And a self-audit on each since the writes: 13 keys (3 written thrice), all equal.
    auto audited = [](const nlohmann::json& j) {
      const auto& last = j["audit"]["last"];
      return last.is_object() && last["result"] == "clean" && last["keys"] == 13;
    };
    return seq >= 19 && followers.size() == 1 && followers[0]["applied_seq"] == seq &&
           followers[0]["acked_seq"] == seq && f["sequences"]["applied"] == seq &&
           f["sequences"]["master"] == seq && audited(m) && audited(f);
  };
  EXPECT_TRUE(WaitUntil(caught_up, kDeadline)) << m.dump(2) << "\n" << f.dump(2);
  ASSERT_TRUE(m.is_object() && f.is_object()) << master->err() << follower->err();

  EXPECT_EQ(m["role"], "master");
  EXPECT_EQ(f["role"], "follower");
  for (const auto* j : {&m, &f}) {
    for (const char* field : {"role", "version", "master_id", "lineage", "sequences", "last_diff",
                              "audit", "security", "disk"}) {
      EXPECT_TRUE(j->contains(field)) << field << " in " << j->dump(2);
    }
    EXPECT_EQ((*j)["version"]["sdiff"], kVersion);
    EXPECT_EQ((*j)["version"]["protocol"], wire::kProtocolVersion);
    EXPECT_TRUE((*j)["lineage"].is_null());
    EXPECT_EQ((*j)["security"]["auth"], "shared-secret");
    EXPECT_EQ((*j)["security"]["tls"], "off");
    EXPECT_GT((*j)["disk"]["free_bytes"].get<uint64_t>(), 0u) << j->dump(2);
  }
  EXPECT_FALSE(m["master_id"].get<std::string>().empty());
  EXPECT_EQ(f["master_id"], m["master_id"]) << "the follower follows this master";
  EXPECT_EQ(m["connected_followers"], 1);
  EXPECT_EQ(m["followers"][0]["state"], "streaming");
  EXPECT_EQ(m["followers"][0]["lag_sequences"], 0);
  EXPECT_EQ(f["master"]["address"], address);
  EXPECT_EQ(f["master"]["link"], "up");
  EXPECT_EQ(f["sequences"]["lag"], 0);
  EXPECT_FALSE(f["last_diff"].is_null()) << "the first connection diffed";
  EXPECT_FALSE(m["last_diff"].is_null()) << "the master diffed with it";
  EXPECT_EQ(m["diffs"], f["diffs"]);
  EXPECT_EQ(testing::HttpGet(master_metrics, "/status/x", 5s).status, 404);

  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

TEST_F(ToolsTest, BadMetricsAddressExitsTwoWithOneLine) {
  WriteDb(dir_ + "/master", 1);
  std::vector<std::vector<std::string>> runs = {
      {ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/master", "--listen=127.0.0.1:0",
       "--metrics=localhost"},
      {ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower", "--master=127.0.0.1:1",
       "--metrics=127.0.0.1:http"},
  };
  for (const auto& argv : runs) {
    RunResult r = RunProgram(argv, kDeadline);
    ASSERT_TRUE(r.code.has_value()) << argv[0];
    EXPECT_EQ(*r.code, 2) << argv[0] << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << argv[0] << ": " << r.err;
    EXPECT_NE(r.err.find("--metrics"), std::string::npos) << argv[0] << ": " << r.err;
  }
}

TEST_F(ToolsTest, FollowerWithTheWrongSecretIsRefusedAndSaysSo) {
  WriteDb(dir_ + "/master", 5);
  WriteSecret(dir_ + "/right", "the master's secret, long enough");
  WriteSecret(dir_ + "/wrong", "not the master's secret, long enough");
  uint16_t port = 0;
  auto master = StartMaster(dir_ + "/master", {"--secret-file=" + dir_ + "/right"}, &port);
  ASSERT_NE(port, 0) << master->err();
  auto follower = ChildProcess::Start(
      {ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
       "--master=127.0.0.1:" + std::to_string(port), "--secret-file=" + dir_ + "/wrong"});
  ASSERT_TRUE(follower);
  EXPECT_TRUE(follower->WaitForOutput(
      [](const std::string&, const std::string& err) {
        return err.find("wrong secret") != std::string::npos;
      },
      kDeadline))
      << follower->err();
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0);
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0);
  EXPECT_TRUE(ReadSecondary(dir_ + "/follower").empty());
}

}  // namespace
}  // namespace sdiff::testing
