// A chain of three hops with the real programs (issue 14, section 1):
// sdiff-rocks-master -> F1 -> F2 -> F3, each follower started with --listen
// but the last, under writes through the master, with F2 killed and started
// again and F1 stopped and started again while the writes go on. Every node
// ends equal to the master (sdiff-ldb diff, offline), the followers of a
// restarted node resumed or diffed and none was sent everything again, and
// the metrics say each hop's lag and the end-to-end lag.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test/support/child_process.h"
#include "test/support/daemon_test.h"
#include "test/support/http_get.h"
#include "test/support/wait.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 20s;

// The number after `marker` in `text` (up to the end of its line); 0 if none.
uint64_t NumberAfter(const std::string& text, const std::string& marker) {
  size_t at = text.find(marker);
  if (at == std::string::npos) return 0;
  return std::stoull(text.substr(at + marker.size()));
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

class ChainDaemonTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    secret_ = "--secret-file=" + dir_ + "/secret";
    WriteSecret(dir_ + "/secret", "a shared secret of more than sixteen bytes");
  }

  // A follower of 127.0.0.1:upstream into dir_/name; with `listen` (a port,
  // 0: any) it serves followers of its own, and *port is the one it printed.
  std::unique_ptr<ChildProcess> StartFollower(const std::string& name, uint16_t upstream,
                                              std::optional<uint16_t> listen, uint16_t* port,
                                              uint16_t* metrics) {
    std::vector<std::string> argv = {ProgramPath("sdiff-rocks-follower"),
                                     "--db=" + dir_ + "/" + name,
                                     "--master=127.0.0.1:" + std::to_string(upstream),
                                     secret_,
                                     "--audit-interval=0",
                                     "--metrics=127.0.0.1:0"};
    if (listen) argv.push_back("--listen=127.0.0.1:" + std::to_string(*listen));
    auto follower = ChildProcess::Start(argv);
    if (!follower) return follower;
    auto started = [&](const std::string& out, const std::string&) {
      return out.find("metrics on port ") != std::string::npos &&
             out.find('\n', out.find("metrics on port ")) != std::string::npos;
    };
    EXPECT_TRUE(follower->WaitForOutput(started, kDeadline)) << follower->err();
    if (port != nullptr) *port = static_cast<uint16_t>(NumberAfter(follower->out(), "on port "));
    *metrics = static_cast<uint16_t>(NumberAfter(follower->out(), "metrics on port "));
    return follower;
  }

  RunResult Ldb(std::vector<std::string> args) {
    args.insert(args.begin(), ProgramPath("sdiff-ldb"));
    return RunProgram(args, kDeadline);
  }

  // Waits until the replica in dir_/name holds master sequence `seq`,
  // persisted: everything up to it, after its diffs (sdiff-ldb get --min-seq
  // reads the live replica as a secondary).
  void WaitForSequence(const std::string& name, uint64_t seq) {
    RunResult r = Ldb({"--db=" + dir_ + "/" + name, "get", "seed",
                       "--min-seq=" + std::to_string(seq), "--wait-ms=20000"});
    EXPECT_EQ(r.code, 0) << name << ": " << r.err;
  }

  std::string secret_;
};

TEST_F(ChainDaemonTest, ThreeHopsUnderWritesWithTheMiddleRestartedEndEqualToTheMaster) {
  WriteDb(dir_ + "/master", {{"seed", "1"}});
  uint16_t master_port = 0;
  auto master = StartMaster(dir_ + "/master", {"--allow-writers", secret_}, &master_port);
  ASSERT_NE(master_port, 0) << master->err();
  // Each hop once the one before holds the seed: a relay refuses followers
  // until it follows its master, and they would back off meanwhile.
  uint16_t f1_port = 0, f2_port = 0, m1 = 0, m2 = 0, m3 = 0;
  auto f1 = StartFollower("f1", master_port, 0, &f1_port, &m1);
  ASSERT_NE(f1_port, 0) << f1->out() << f1->err();
  WaitForSequence("f1", 1);
  auto f2 = StartFollower("f2", f1_port, 0, &f2_port, &m2);
  ASSERT_NE(f2_port, 0) << f2->out() << f2->err();
  WaitForSequence("f2", 1);
  auto f3 = StartFollower("f3", f2_port, std::nullopt, nullptr, &m3);
  ASSERT_TRUE(f3);

  // The writer: loads of 40 keys (half of them rewritten each round) and a
  // delete, through the master, until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::atomic<uint64_t> last_seq{0};
  std::atomic<bool> failed{false};
  std::string writer_error;  // read once the writer is joined
  std::thread writer([&] {
    for (int round = 0; !stop; ++round) {
      std::string file = dir_ + "/load" + std::to_string(round % 2) + ".tsv";
      {
        std::ofstream out(file);
        for (int i = 0; i < 40; ++i) {
          out << "k" << (round * 20 + i) << "\tround" << round << "\n";
        }
      }
      RunResult load = Ldb({"--master=127.0.0.1:" + std::to_string(master_port), secret_, "load",
                            "--print-seq", file});
      RunResult del = Ldb({"--master=127.0.0.1:" + std::to_string(master_port), secret_, "delete",
                           "--print-seq", "k" + std::to_string(round * 20 + 3)});
      if (load.code != 0 || del.code != 0) {
        writer_error = load.err + del.err;
        failed = true;
        return;
      }
      last_seq = NumberAfter(del.out, "seq ");
      ++rounds;
    }
  });
  struct StopOnExit {  // a failed assertion returns early: the writer stops first
    std::atomic<bool>* stop;
    std::thread* writer;
    ~StopOnExit() {
      *stop = true;
      if (writer->joinable()) writer->join();
    }
  } stop_on_exit{&stop, &writer};
  auto after_rounds = [&](int n) {
    int target = rounds + n;
    return WaitUntil([&] { return rounds >= target || failed; }, kDeadline) && !failed;
  };

  ASSERT_TRUE(after_rounds(3));
  WaitForSequence("f3", last_seq);  // the chain is up

  // F2, the middle, killed while the writes go on, and started again on its
  // port: F3 comes back to it.
  EXPECT_EQ(f2->Stop(SIGKILL, kDeadline), 128 + SIGKILL);
  ASSERT_TRUE(after_rounds(3));
  f2 = StartFollower("f2", f1_port, f2_port, nullptr, &m2);
  ASSERT_TRUE(after_rounds(3));
  WaitForSequence("f3", last_seq);

  // F1 stopped and started again: F2 and, through it, F3 go on.
  EXPECT_EQ(f1->Stop(SIGTERM, kDeadline), 0) << f1->err();
  ASSERT_TRUE(after_rounds(2));
  f1 = StartFollower("f1", master_port, f1_port, nullptr, &m1);
  ASSERT_TRUE(after_rounds(3));
  stop = true;
  writer.join();
  ASSERT_EQ(writer_error, "");
  const uint64_t final_seq = last_seq;
  for (const char* name : {"f1", "f2", "f3"}) WaitForSequence(name, final_seq);

  // Lag: F2's page lists F3 with its lag behind F2 (one hop); F3's own is
  // measured from the origin master's sequence (end to end).
  HttpResponse page = HttpGet(m2, "/metrics", kDeadline);
  ASSERT_EQ(page.status, 200) << page.error;
  EXPECT_NE(page.body.find("sdiff_relay_sequence " + std::to_string(final_seq) + "\n"),
            std::string::npos)
      << page.body;
  EXPECT_NE(page.body.find("sdiff_connected_followers 1\n"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("sdiff_follower_lag_sequences{peer="), std::string::npos) << page.body;
  EXPECT_TRUE(WaitUntil(
      [&] {
        HttpResponse leaf = HttpGet(m3, "/metrics", kDeadline);
        return leaf.body.find("sdiff_master_sequence " + std::to_string(final_seq) + "\n") !=
                   std::string::npos &&
               leaf.body.find("sdiff_lag_sequences 0\n") != std::string::npos;
      },
      kDeadline));

  EXPECT_EQ(f3->Stop(SIGTERM, kDeadline), 0) << f3->err();
  EXPECT_EQ(f2->Stop(SIGTERM, kDeadline), 0) << f2->err();
  EXPECT_EQ(f1->Stop(SIGTERM, kDeadline), 0) << f1->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();

  // Nobody was sent everything again: F3 began by a diff (it was empty and
  // small) and then resumed or diffed; F2 too after its restart.
  EXPECT_EQ(Count(f3->err(), "bootstrapping"), 0u) << f3->err();
  EXPECT_GE(Count(f3->err(), "connected to master"), 2u) << f3->err();
  EXPECT_EQ(Count(f2->err(), "bootstrapping"), 0u) << f2->err();
  EXPECT_EQ(Count(f2->err(), "copied the master's files"), 0u) << f2->err();

  for (const char* name : {"f1", "f2", "f3"}) {
    RunResult diff = Ldb({"--db=" + dir_ + "/master", "diff", "--db2=" + dir_ + "/" + name});
    EXPECT_EQ(diff.code, 0) << name << ":\n" << diff.out << diff.err;
  }
}

TEST_F(ChainDaemonTest, ListenFlagsWithoutListenAreOneLineAndExitTwo) {
  RunResult r = RunProgram({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/f",
                            "--master=127.0.0.1:1", "--max-connections=3"},
                           kDeadline);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--listen"), std::string::npos) << r.err;
  EXPECT_EQ(Count(r.err, "\n"), 1u) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/f")) << "nothing created";
}

}  // namespace
}  // namespace sdiff::testing
