// The programs people run, spawned as processes: the demo, the daemons'
// replication and clean stop, and their one-line errors and exit codes.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "test/support/child_process.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;
using Contents = std::map<std::string, std::string>;

constexpr auto kDeadline = 30s;

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

class ToolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-tools-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteDb(const std::string& path, int keys) {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, &db).ok());
    for (int i = 0; i < keys; ++i) {
      db->Put(rocksdb::WriteOptions(), "key" + std::to_string(i), "value" + std::to_string(i));
    }
    delete db;
  }

  // The default family of a database, read as another process would.
  Contents ReadSecondary(const std::string& path) {
    rocksdb::Options o;
    o.max_open_files = -1;
    rocksdb::DB* db = nullptr;
    if (!rocksdb::DB::OpenAsSecondary(o, path, dir_ + "/secondary", &db).ok()) return {};
    Contents out;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next())
      out[it->key().ToString()] = it->value().ToString();
    it.reset();
    delete db;
    return out;
  }

  void WriteSecret(const std::string& path, const std::string& secret) {
    std::ofstream(path) << secret << "\n";
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }

  // Starts the master daemon and returns its port (0 if it did not come up).
  std::unique_ptr<ChildProcess> StartMaster(const std::string& db, std::vector<std::string> extra,
                                            uint16_t* port) {
    std::vector<std::string> argv = {ProgramPath("sdiff-rocks-master"), "--db=" + db,
                                     "--listen=127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto master = ChildProcess::Start(argv);
    *port = 0;
    if (master && master->WaitForOutput(
                      [](const std::string& out, const std::string&) {
                        return out.find('\n') != std::string::npos;
                      },
                      kDeadline)) {
      auto at = master->out().find("on port ");
      if (at != std::string::npos)
        *port = static_cast<uint16_t>(std::stoi(master->out().substr(at + 8)));
    }
    return master;
  }

  std::string dir_;
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

TEST_F(ToolsTest, MissingOrLockedDatabaseIsOneLine) {
  RunResult missing = RunProgram(
      {ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/nowhere", "--listen=127.0.0.1:0"},
      kDeadline);
  ASSERT_TRUE(missing.code.has_value());
  EXPECT_NE(*missing.code, 0);
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
  EXPECT_NE(*locked.code, 0);
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
