// Acknowledged writes and read-your-writes with the real programs (issue 14,
// sections 3 and 4): sdiff-ldb --print-seq prints the master sequence of a
// write, get --min-seq reads a live follower's replica once it holds it, and
// a master with --min-acks answers a write only once a follower has applied
// it, or tells the writer it was not replicated (exit 2, the write kept).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>

#include "test/support/child_process.h"
#include "test/support/daemon_test.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

// "seq N\n" -> N; 0 if the line is not that.
uint64_t SeqOf(const std::string& out) {
  if (out.rfind("seq ", 0) != 0 || out.back() != '\n') return 0;
  return std::stoull(out.substr(4));
}

class AckDaemonTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    secret_ = dir_ + "/secret";
    WriteSecret(secret_, "a shared secret of more than sixteen bytes");
  }

  RunResult Ldb(std::vector<std::string> args) {
    args.insert(args.begin(), ProgramPath("sdiff-ldb"));
    return RunProgram(args, kDeadline);
  }

  // A master that allows writers, with `extra` flags; sets address_.
  std::unique_ptr<ChildProcess> Master(const std::vector<std::string>& extra) {
    WriteDb(dir_ + "/master", {{"seed", "1"}});
    std::vector<std::string> flags = {"--allow-writers", "--secret-file=" + secret_};
    flags.insert(flags.end(), extra.begin(), extra.end());
    uint16_t port = 0;
    auto master = StartMaster(dir_ + "/master", flags, &port);
    EXPECT_NE(port, 0) << master->err();
    address_ = "--master=127.0.0.1:" + std::to_string(port);
    return master;
  }

  std::unique_ptr<ChildProcess> Follower() {
    return ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
                                address_, "--secret-file=" + secret_});
  }

  std::string secret_;
  std::string address_;
};

TEST_F(AckDaemonTest, PrintSeqThenReadTheLiveReplicaOnceItHoldsThatSequence) {
  auto master = Master({});
  auto follower = Follower();
  ASSERT_TRUE(follower);
  std::string secret = "--secret-file=" + secret_;
  RunResult put = Ldb({address_, secret, "put", "--print-seq", "k1", "v1"});
  ASSERT_EQ(put.code, 0) << put.err;
  uint64_t seq = SeqOf(put.out);
  ASSERT_GT(seq, 0u) << put.out;

  std::string replica = "--db=" + dir_ + "/follower";
  RunResult get =
      Ldb({replica, "get", "k1", "--min-seq=" + std::to_string(seq), "--wait-ms=20000"});
  ASSERT_EQ(get.code, 0) << get.err << follower->err();
  EXPECT_EQ(get.out, "v1\n");

  RunResult del = Ldb({address_, secret, "delete", "k1", "--print-seq"});
  ASSERT_EQ(del.code, 0) << del.err;
  uint64_t del_seq = SeqOf(del.out);
  EXPECT_GT(del_seq, seq) << del.out;
  std::ofstream(dir_ + "/load.tsv") << "a\t1\nb\t2\n";
  RunResult load = Ldb({address_, secret, "load", "--print-seq", dir_ + "/load.tsv"});
  ASSERT_EQ(load.code, 0) << load.err;
  uint64_t load_seq = SeqOf(load.out);
  EXPECT_GT(load_seq, del_seq) << load.out;
  get = Ldb({replica, "get", "b", "--min-seq=" + std::to_string(load_seq), "--wait-ms=20000"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, "2\n");
  get = Ldb({replica, "get", "k1", "--min-seq=" + std::to_string(del_seq), "--wait-ms=20000"});
  EXPECT_EQ(get.code, 1) << "deleted, and the replica has applied the delete: " << get.err;

  // A sequence the master has not reached: one line, exit 2, after the wait.
  auto start = std::chrono::steady_clock::now();
  get = Ldb({replica, "get", "b", "--min-seq=" + std::to_string(load_seq + 1000), "--wait-ms=300"});
  EXPECT_EQ(get.code, 2) << get.err;
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_EQ(Lines(get.err), 1u) << get.err;
  EXPECT_NE(get.err.find("has not applied master sequence"), std::string::npos) << get.err;
  EXPECT_EQ(get.out, "");

  // A replica that is not there is an error (exit 2), not a missing key (exit 1).
  get = Ldb({"--db=" + dir_ + "/no-such-replica", "get", "b", "--min-seq=1", "--wait-ms=0"});
  EXPECT_EQ(get.code, 2) << get.err;
  EXPECT_EQ(Lines(get.err), 1u) << get.err;
  EXPECT_EQ(get.err.find("not found: b"), std::string::npos) << get.err;

  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

TEST_F(AckDaemonTest, MinAcksWithALiveFollowerAcknowledgesTheWrite) {
  auto master = Master({"--min-acks=1", "--ack-timeout-ms=10000"});
  auto follower = Follower();
  ASSERT_TRUE(follower);
  std::string secret = "--secret-file=" + secret_;
  for (int i = 0; i < 3; ++i) {
    RunResult put = Ldb({address_, secret, "put", "--print-seq", "k" + std::to_string(i), "v"});
    ASSERT_EQ(put.code, 0) << put.err << master->err();
    uint64_t seq = SeqOf(put.out);
    ASSERT_GT(seq, 0u) << put.out;
    // Acknowledged means applied on the follower: readable there at once.
    RunResult get = Ldb({"--db=" + dir_ + "/follower", "get", "k" + std::to_string(i),
                         "--min-seq=" + std::to_string(seq), "--wait-ms=0"});
    EXPECT_EQ(get.code, 0) << get.err;
    EXPECT_EQ(get.out, "v\n");
  }
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

TEST_F(AckDaemonTest, MinAcksWithoutAFollowerSaysNotReplicatedAndKeepsTheWrite) {
  auto master = Master({"--min-acks=1", "--ack-timeout-ms=500"});
  std::string secret = "--secret-file=" + secret_;
  auto start = std::chrono::steady_clock::now();
  RunResult put = Ldb({address_, secret, "put", "--print-seq", "k", "v"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(put.code, 2) << put.err;
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 10s);
  EXPECT_EQ(Lines(put.err), 1u) << put.err;
  EXPECT_NE(put.err.find("not replicated"), std::string::npos) << put.err;
  EXPECT_GT(SeqOf(put.out), 0u) << "the write is committed, at this sequence: " << put.out;
  // Later writes of another writer go on: the master is not stuck.
  RunResult again = Ldb({address_, secret, "put", "k2", "v2"});
  EXPECT_EQ(again.code, 2) << again.err;
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  Contents on_master = ReadSecondary(dir_ + "/master");
  EXPECT_EQ(on_master["k"], "v");
  EXPECT_EQ(on_master["k2"], "v2");
}

TEST_F(AckDaemonTest, BadFlagsAreOneLineAndExitTwo) {
  std::string db = dir_ + "/master";
  WriteDb(db, {{"k", "v"}});
  RunResult r =
      RunProgram({ProgramPath("sdiff-rocks-master"), "--db=" + db, "--min-acks=1"}, kDeadline);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--min-acks"), std::string::npos) << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--db=" + db, "get", "k", "--wait-ms=5"},
        {"--db=" + db, "get", "k", "--min-seq=0"},
        {"--db=" + db, "put", "--print-seq", "k", "v"}}) {
    RunResult ldb = Ldb(args);
    EXPECT_EQ(ldb.code, 2) << args.back();
    EXPECT_EQ(Lines(ldb.err), 1u) << ldb.err;
  }
  EXPECT_EQ(ReadSecondary(db), (Contents{{"k", "v"}})) << "nothing touched";
}

}  // namespace
}  // namespace sdiff::testing
