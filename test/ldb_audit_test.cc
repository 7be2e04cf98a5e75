// sdiff-ldb --master audit, end to end: the real sdiff-ldb program against a
// real RocksDB master (plugin::Master in this process, or the sdiff-rocks-master
// daemon). Exit 0 when the master's tree equals its data, 1 when the audit
// repaired it (a compaction filter dropped keys the tree kept), 2 with one
// line on stderr for every error; and an audit never holds up the master's
// I/O threads.
#include <gtest/gtest.h>
#include <rocksdb/compaction_filter.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "net/audit_client.h"
#include "net/master_server.h"
#include "plugin/inspector.h"
#include "test/support/child_process.h"
#include "test/support/daemon_test.h"
#include "test/support/memory_hub.h"
#include "test/support/replica_pair.h"
#include "test/support/rocks_util.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;
constexpr char kSecret[] = "a shared secret of more than sixteen bytes";

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

class LdbAuditTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    secret_file_ = dir_ + "/secret";
    WriteSecret(secret_file_, kSecret);
  }
  void TearDown() override {
    follower_.reset();
    master_.reset();
    DaemonTest::TearDown();
  }

  // A master whose compaction filter drops "drop*" keys, taken with
  // accept_changes_outside_wal, as issue 12 lets an embedder do.
  MasterDb& OpenMaster() {
    MasterDbOptions options;
    options.tune = [this](rocksdb::Options* o) { o->compaction_filter = &filter_; };
    master_ = std::make_unique<MasterDb>(dir_ + "/master", options);
    plugin::MasterOptions attach;
    attach.accept_changes_outside_wal = true;
    attach.server.secret = kSecret;
    Status s = master_->Attach(attach);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return *master_;
  }

  // sdiff-ldb --master=MASTER [--secret-file=FILE] audit; no flag for an empty file.
  RunResult Audit(const std::string& master, const std::string& secret_file) {
    std::vector<std::string> args = {ProgramPath("sdiff-ldb"), "--master=" + master};
    if (!secret_file.empty()) args.push_back("--secret-file=" + secret_file);
    args.push_back("audit");
    return RunProgram(args, kDeadline);
  }
  RunResult Audit(const std::string& master) { return Audit(master, secret_file_); }

  std::string secret_file_;
  DropPrefixFilter filter_;
  std::unique_ptr<MasterDb> master_;
  std::unique_ptr<plugin::Follower> follower_;
};

TEST_F(LdbAuditTest, TreeEqualToTheDataExitsZero) {
  MasterDb& m = OpenMaster();
  for (int i = 0; i < 30; ++i) m.Put(i % 3, "k" + std::to_string(i), "v");
  ASSERT_TRUE(m.WaitTailed());

  RunResult audit = Audit(m.master_address());
  ASSERT_EQ(audit.code, 0) << audit.out << audit.err;
  EXPECT_EQ(audit.err, "");
  EXPECT_EQ(audit.out, "audit of " + m.master_address() + " at sequence " +
                           std::to_string(m.db->GetLatestSequenceNumber()) +
                           ": 30 keys scanned, 0 mismatches, " +
                           audit.out.substr(audit.out.rfind(", ") + 2));
  EXPECT_EQ(Lines(audit.out), 1u) << audit.out;
  EXPECT_NE(audit.out.find(" s\n"), std::string::npos) << audit.out;
  EXPECT_EQ(m.master->status().audit.runs, 1u) << "the audit did not run on the master";
}

// A compaction drops keys without a WAL record: the tree (and the follower)
// kept them. The audit sdiff-ldb asks for finds them, the master corrects
// its tree, the follower's diff removes them, and the next audit is clean.
TEST_F(LdbAuditTest, TreeThatDifferedIsRepairedExitsOneThenZero) {
  MasterDb& m = OpenMaster();
  plugin::FollowerOptions follower = QuietFollowerOptions(m, dir_ + "/follower");
  follower.client.secret = kSecret;
  Status s = plugin::Follower::Open(follower, &follower_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (int i = 0; i < 20; ++i) m.Put(i % 3, "drop" + std::to_string(i), "gone soon");
  for (int i = 0; i < 20; ++i) m.Put(i % 3, "keep" + std::to_string(i), "stays");
  ASSERT_TRUE(WaitConverged(m, follower_.get(), kDeadline));
  for (auto* h : m.handles) {
    ASSERT_TRUE(m.db->Flush(rocksdb::FlushOptions(), h).ok());
    ASSERT_TRUE(m.db->CompactRange(rocksdb::CompactRangeOptions(), h, nullptr, nullptr).ok());
  }
  ASSERT_EQ(m.Scan().size(), 20u) << "the filter did not drop the keys";
  ASSERT_EQ(m.master->status().keys, 40u) << "the tree cannot know yet";

  RunResult repaired = Audit(m.master_address());
  ASSERT_EQ(repaired.code, 1) << repaired.out << repaired.err;
  EXPECT_EQ(repaired.err, "");
  EXPECT_NE(repaired.out.find(": 20 keys scanned, 20 mismatches, "), std::string::npos)
      << repaired.out;
  // The summary, then the first few keys the master corrected.
  EXPECT_EQ(Lines(repaired.out), 1 + plugin::kAuditExamples) << repaired.out;
  EXPECT_NE(repaired.out.find("\nmismatch default:drop"), std::string::npos) << repaired.out;
  EXPECT_EQ(m.master->status().keys, 20u);
  EXPECT_TRUE(WaitConverged(m, follower_.get(), kDeadline))
      << "the follower still holds the dropped keys";

  RunResult clean = Audit(m.master_address());
  EXPECT_EQ(clean.code, 0) << clean.out << clean.err;
  EXPECT_NE(clean.out.find(": 20 keys scanned, 0 mismatches, "), std::string::npos) << clean.out;
  EXPECT_EQ(m.master->status().audit.mismatches, 20u);
}

TEST_F(LdbAuditTest, RefusalsAreOneLineAndExitTwo) {
  MasterDb& m = OpenMaster();
  m.Put(0, "k", "v");
  ASSERT_TRUE(m.WaitTailed());

  WriteSecret(dir_ + "/wrong", "another secret, also long enough");
  RunResult wrong = Audit(m.master_address(), dir_ + "/wrong");
  EXPECT_EQ(wrong.code, 2);
  EXPECT_EQ(wrong.out, "");
  EXPECT_EQ(Lines(wrong.err), 1u) << wrong.err;
  EXPECT_NE(wrong.err.find("wrong secret"), std::string::npos) << wrong.err;

  RunResult none = Audit(m.master_address(), "");  // no --secret-file
  EXPECT_EQ(none.code, 2);
  EXPECT_EQ(Lines(none.err), 1u) << none.err;
  EXPECT_NE(none.err.find("authentication required"), std::string::npos) << none.err;
  EXPECT_EQ(m.master->status().audit.runs, 0u) << "an unauthenticated peer started an audit";

  RunResult unreachable = Audit("127.0.0.1:1");
  EXPECT_EQ(unreachable.code, 2);
  EXPECT_EQ(Lines(unreachable.err), 1u) << unreachable.err;
  EXPECT_NE(unreachable.err.find("cannot connect"), std::string::npos) << unreachable.err;

  for (std::vector<std::string> args :
       {std::vector<std::string>{"audit"},
        {"--db=" + dir_ + "/master", "audit"},
        {"--db=" + dir_ + "/master", "--master=" + m.master_address(),
         "--secret-file=" + secret_file_, "audit"}}) {
    args.insert(args.begin(), ProgramPath("sdiff-ldb"));
    RunResult r = RunProgram(args, kDeadline);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(LdbAuditTest, HelpDescribesTheCommandAndItsExitStatus) {
  RunResult help = RunProgram({ProgramPath("sdiff-ldb"), "--help"}, kDeadline);
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("  audit "), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("exit 0 equal, 1 repaired, 2 error"), std::string::npos) << help.out;
}

// The daemon serves auditors too, with its own secret rules.
TEST_F(LdbAuditTest, TheMasterDaemonIsAudited) {
  WriteDb(dir_ + "/daemon", NumberedKeys(25));
  uint16_t port = 0;
  auto daemon = StartMaster(dir_ + "/daemon", {"--secret-file=" + secret_file_}, &port);
  ASSERT_NE(port, 0) << daemon->err();
  RunResult audit = Audit("127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(audit.code, 0) << audit.out << audit.err;
  EXPECT_NE(audit.out.find(": 25 keys scanned, 0 mismatches, "), std::string::npos) << audit.out;
  EXPECT_EQ(daemon->Stop(SIGTERM, kDeadline), 0) << daemon->err();
  EXPECT_NE(daemon->err().find("auditor 127.0.0.1:"), std::string::npos) << daemon->err();
}

// ---- against net::MasterServer with an in-memory hub ----

// A hub whose audit hook the test controls: absent (the role is refused),
// failing, or blocking until released.
class AuditHub : public MemoryHub {
 public:
  AuditHub() : MemoryHub("m1") {}
  MasterHooks SessionHooks() override {
    MasterHooks h = MemoryHub::SessionHooks();
    if (audit) h.audit = audit;
    return h;
  }
  std::function<Status(AuditReport*)> audit;  // null: no auditors
};

class AuditServerTest : public LdbAuditTest {
 protected:
  void TearDown() override {
    if (server_) server_->Stop();
    LdbAuditTest::TearDown();
  }
  void StartServer() {
    net::MasterServerOptions o;
    o.listen = "127.0.0.1:0";
    o.threads = 1;  // one I/O thread: an audit on it would stop every session
    o.logger = QuietLogger();
    ASSERT_TRUE(net::MasterServer::Start(&hub_, o, &server_).ok());
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }

  AuditHub hub_;
  std::unique_ptr<net::MasterServer> server_;
};

TEST_F(AuditServerTest, MasterThatDoesNotAuditRefusesTheRole) {
  StartServer();
  RunResult r = Audit(address(), "");
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("does not audit on demand"), std::string::npos) << r.err;
}

TEST_F(AuditServerTest, FailedAuditExitsTwoWithTheMastersReason) {
  hub_.audit = [](AuditReport*) { return Status::Aborted("the scan was cancelled"); };
  StartServer();
  RunResult r = Audit(address(), "");
  EXPECT_EQ(r.code, 2) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("self-audit failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("the scan was cancelled"), std::string::npos) << r.err;
}

// An audit takes seconds on a large database. While one runs, the master's
// only I/O thread still serves every other session: here an inspector's
// whole diff, and the auditor's own Pings.
TEST_F(AuditServerTest, AuditRunsOffTheIoThread) {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  hub_.audit = [&](AuditReport* report) {
    std::unique_lock lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait_for(lock, kDeadline, [&] { return release; });
    report->keys = 3;
    return Status::OK();
  };
  for (int i = 0; i < 3; ++i) hub_.Put("k" + std::to_string(i), "v");
  StartServer();

  net::AuditClientOptions options;
  options.connect.master = address();
  AuditReport report;
  Status audit_status;
  std::thread auditor([&] { audit_status = net::AuditMaster(options, &report); });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kDeadline, [&] { return entered; }));
  }

  // The inspector's diff needs the I/O thread at every step.
  WriteDb(dir_ + "/local", {});
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_ + "/local", &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  plugin::InspectOptions inspect;
  inspect.connect.master = address();
  inspect.connect.deadline = 10s;
  plugin::FamilyResolver resolve = [&](const std::string& name, bool,
                                       rocksdb::ColumnFamilyHandle** handle) {
    *handle = name == "default" ? db->DefaultColumnFamily() : nullptr;
    return Status::OK();
  };
  plugin::InspectResult result;
  Status inspected = plugin::InspectMaster(db.get(), resolve, inspect, &result);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  auditor.join();
  ASSERT_TRUE(inspected.ok()) << inspected.ToString();
  EXPECT_EQ(result.differences.size(), 3u);
  ASSERT_TRUE(audit_status.ok()) << audit_status.ToString();
  EXPECT_EQ(report.keys, 3u);
}

}  // namespace
}  // namespace sdiff::testing
