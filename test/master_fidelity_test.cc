// The master's tree must equal its database: WAL records that RocksDB numbers
// in ways a tailer can misread, families whose order or data the tree cannot
// follow, and the self-audit that catches whatever else drifts. A real
// RocksDB master and a real RocksDB follower, over loopback.
#include <gtest/gtest.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/comparator.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/db_ttl.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "plugin/wal_tailer.h"
#include "test/support/replica_pair.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;
using testing::MasterDb;
using testing::MasterDbOptions;
using testing::QuietFollowerOptions;
using testing::WaitConverged;

constexpr auto kDeadline = 15s;

using testing::DropPrefixFilter;

class MasterFidelityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-fidelity-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    follower_.reset();
    master_.reset();
    std::filesystem::remove_all(dir_);
  }

  MasterDb& OpenMaster(MasterDbOptions options = {}) {
    master_ = std::make_unique<MasterDb>(dir_ + "/master", std::move(options));
    return *master_;
  }
  void OpenFollower() {
    Status s = Follower::Open(QuietFollowerOptions(*master_, dir_ + "/follower"), &follower_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  bool Converged() { return WaitConverged(*master_, follower_.get(), kDeadline); }

  std::string dir_;
  std::unique_ptr<MasterDb> master_;
  std::unique_ptr<Follower> follower_;
};

// RocksDB gives an empty batch the next sequence number without consuming
// it, so the next batch starts at the same number. The tailer took the empty
// one for a batch of one and dropped the next as already seen: that write
// was missing from the tree and from every follower, for good.
TEST_F(MasterFidelityTest, AnEmptyBatchDoesNotHideTheNextWrite) {
  MasterDb& m = OpenMaster();
  ASSERT_TRUE(m.Attach().ok());
  OpenFollower();
  m.Put(0, "before", "1");
  ASSERT_TRUE(Converged());
  rocksdb::WriteBatch empty;
  ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &empty).ok());
  m.Put(0, "after-empty", "2");
  m.Put(1, "and-next", "3");
  ASSERT_TRUE(m.WaitTailed());
  EXPECT_EQ(m.master->status().keys, m.Scan().size()) << "the tree lost a write";
  EXPECT_TRUE(Converged());
  EXPECT_EQ(m.master->status().rebuilds, 0u);
}

// A batch holding only PutLogData is empty to RocksDB's sequence numbers too;
// PutLogData inside a batch of writes takes no sequence number of its own.
TEST_F(MasterFidelityTest, LogDataAloneOrAmongWritesReplicates) {
  MasterDb& m = OpenMaster();
  ASSERT_TRUE(m.Attach().ok());
  OpenFollower();
  // A record the tailer's iterator reads after another; as the first record
  // it reads, RocksDB's own seek passes over a record of no sequence numbers.
  m.Put(0, "before", "0");
  ASSERT_TRUE(m.WaitTailed());
  rocksdb::WriteBatch only_log;
  ASSERT_TRUE(only_log.PutLogData("an application's note").ok());
  ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &only_log).ok());
  m.Put(0, "after-log", "1");
  rocksdb::WriteBatch mixed;
  ASSERT_TRUE(mixed.PutLogData("first").ok());
  ASSERT_TRUE(mixed.Put(m.handles[0], "m1", "a").ok());
  ASSERT_TRUE(mixed.PutLogData("middle").ok());
  ASSERT_TRUE(mixed.Put(m.handles[2], "m2", "b").ok());
  ASSERT_TRUE(mixed.PutLogData("last").ok());
  ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &mixed).ok());
  m.Put(1, "after-mixed", "2");
  ASSERT_TRUE(m.WaitTailed());
  EXPECT_EQ(m.master->status().keys, 5u) << "the tree lost a write";
  EXPECT_TRUE(Converged());
  EXPECT_EQ(m.master->status().rebuilds, 0u);
}

// A write with disableWAL has no WAL record: as the last write, the tailer
// waited for a later logged one to notice (the tree and every follower lacked
// it meanwhile). After an empty batch in a later WAL file it could also reopen
// its iterator in a busy loop; that one the differential test's seed 475
// shows (about one run in three), this test does not reach it.
TEST_F(MasterFidelityTest, ATrailingUnloggedWriteIsNotLeftOut) {
  MasterDb& m = OpenMaster();
  ASSERT_TRUE(m.Attach().ok());
  OpenFollower();
  rocksdb::WriteOptions no_wal;
  no_wal.disableWAL = true;
  for (bool empty_first : {false, true}) {
    m.Put(0, "logged", empty_first ? "2" : "1");
    ASSERT_TRUE(m.WaitTailed());
    if (empty_first) {
      // In a new WAL file: RocksDB's seek, not finding the sequence in the
      // first file, then stops at the next record, the empty one.
      for (auto* h : m.handles) ASSERT_TRUE(m.db->Flush({}, h).ok());
      rocksdb::WriteBatch empty;
      ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &empty).ok());
    }
    std::string key = empty_first ? "unlogged-after-empty" : "unlogged";
    ASSERT_TRUE(m.db->Put(no_wal, m.handles[1], key, "u").ok());
    m.master->NotifyWrite();
    ASSERT_TRUE(m.WaitTailed(5s)) << key << ": the tailer is at " << m.master->status().tailed_seq
                                  << ", the database at " << m.db->GetLatestSequenceNumber();
    EXPECT_EQ(m.master->status().keys, m.Scan().size());
    EXPECT_TRUE(Converged());
  }
}

// The tree and every follower apply range deletes bytewise; a family ordered
// by another comparator is refused, naming the family and its comparator.
// (Before, it was replicated, and a DeleteRange left the keys it deleted on
// the master in the tree and on every follower.)
TEST_F(MasterFidelityTest, AFamilyWithAnotherComparatorIsRefused) {
  MasterDbOptions options;
  options.tune = [](rocksdb::Options* o) { o->comparator = rocksdb::ReverseBytewiseComparator(); };
  options.families = {"default"};
  MasterDb& m = OpenMaster(options);
  Status s = m.Attach();
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("'default'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("rocksdb.ReverseBytewiseComparator"), std::string::npos)
      << s.message();
  EXPECT_EQ(m.master, nullptr);
}

TEST_F(MasterFidelityTest, ACompactionFilterIsRefusedUnlessAccepted) {
  auto filter = std::make_shared<DropPrefixFilter>();
  MasterDbOptions options;
  options.tune = [&](rocksdb::Options* o) { o->compaction_filter = filter.get(); };
  MasterDb& m = OpenMaster(options);
  Status s = m.Attach();
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("'default'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("DropPrefixFilter"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("accept_changes_outside_wal"), std::string::npos) << s.message();
  MasterOptions accept;
  accept.accept_changes_outside_wal = true;
  EXPECT_TRUE(m.Attach(accept).ok());
}

TEST_F(MasterFidelityTest, ATtlDatabaseIsRefused) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DBWithTTL* raw = nullptr;
  ASSERT_TRUE(rocksdb::DBWithTTL::Open(o, dir_ + "/ttl", &raw, 60).ok());
  std::unique_ptr<rocksdb::DBWithTTL> db(raw);
  std::unique_ptr<Master> master;
  MasterOptions options;
  options.server.listen = "127.0.0.1:0";
  options.server.logger = testing::QuietLogger();
  Status s = Master::Attach(db.get(), {}, options, &master);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("TTL database"), std::string::npos) << s.message();
}

// A compaction filter drops keys without a WAL record: the tree and the
// follower kept them. With accept_changes_outside_wal, the self-audit finds
// them, corrects the master's tree, and the follower's diff removes them.
TEST_F(MasterFidelityTest, TheSelfAuditRepairsWhatACompactionFilterDropped) {
  auto filter = std::make_shared<DropPrefixFilter>();
  MasterDbOptions options;
  options.tune = [&](rocksdb::Options* o) { o->compaction_filter = filter.get(); };
  MasterDb& m = OpenMaster(options);
  MasterOptions accept;
  accept.accept_changes_outside_wal = true;
  ASSERT_TRUE(m.Attach(accept).ok());
  OpenFollower();
  for (int i = 0; i < 20; ++i) m.Put(i % 3, "drop" + std::to_string(i), "gone soon");
  for (int i = 0; i < 20; ++i) m.Put(i % 3, "keep" + std::to_string(i), "stays");
  ASSERT_TRUE(Converged());
  for (auto* h : m.handles) {
    ASSERT_TRUE(m.db->Flush(rocksdb::FlushOptions(), h).ok());
    ASSERT_TRUE(m.db->CompactRange(rocksdb::CompactRangeOptions(), h, nullptr, nullptr).ok());
  }
  ASSERT_EQ(m.Scan().size(), 20u) << "the filter did not drop the keys";
  EXPECT_EQ(m.master->status().keys, 40u) << "the tree cannot know yet";

  AuditResult audit;
  ASSERT_TRUE(m.master->Audit(&audit).ok());
  EXPECT_EQ(audit.mismatches, 20u);
  EXPECT_EQ(audit.keys, 20u);
  EXPECT_EQ(audit.examples.size(), kAuditExamples);
  EXPECT_EQ(m.master->status().keys, 20u);
  EXPECT_EQ(m.master->status().audit.mismatches, 20u);
  EXPECT_TRUE(Converged()) << "the follower still holds the dropped keys";

  ASSERT_TRUE(m.master->Audit(&audit).ok());
  EXPECT_EQ(audit.mismatches, 0u) << "the correction did not hold";
  EXPECT_EQ(m.master->status().audit.runs, 2u);
}

TEST_F(MasterFidelityTest, AnAuditOfAFaithfulTreeFindsNothing) {
  MasterDb& m = OpenMaster();
  ASSERT_TRUE(m.Attach().ok());
  for (int i = 0; i < 100; ++i) m.Put(i % 3, "k" + std::to_string(i), std::to_string(i));
  ASSERT_TRUE(m.db->Merge(rocksdb::WriteOptions(), m.handles[0], "k1", "more").ok());
  ASSERT_TRUE(m.db->DeleteRange(rocksdb::WriteOptions(), m.handles[1], "k2", "k5").ok());
  AuditResult audit;
  ASSERT_TRUE(m.master->Audit(&audit).ok());
  EXPECT_EQ(audit.mismatches, 0u);
  EXPECT_EQ(audit.keys, m.Scan().size());
  EXPECT_EQ(audit.seq, m.db->GetLatestSequenceNumber());
  EXPECT_GT(m.master->status().audit.last_unix_ms, 0);
}

// A follower audits its own tree against its own data: a key written into
// the replica behind replication's back is found, the tree corrected, and the
// master's diff puts the master's value back.
TEST_F(MasterFidelityTest, TheFollowersSelfAuditFindsAnEditBehindItsBack) {
  MasterDb& m = OpenMaster();
  ASSERT_TRUE(m.Attach().ok());
  OpenFollower();
  for (int i = 0; i < 30; ++i) m.Put(i % 3, "k" + std::to_string(i), "master");
  ASSERT_TRUE(Converged());
  AuditResult audit;
  ASSERT_TRUE(follower_->Audit(&audit).ok());
  EXPECT_EQ(audit.mismatches, 0u);
  EXPECT_EQ(audit.keys, 30u);

  rocksdb::DB* replica = follower_->db();
  ASSERT_TRUE(replica->Put({}, follower_->column_family("meta"), "k1", "edited").ok());
  ASSERT_TRUE(replica->Put({}, follower_->column_family("other"), "stray", "x").ok());
  ASSERT_TRUE(follower_->Audit(&audit).ok());
  EXPECT_EQ(audit.mismatches, 2u);
  ASSERT_FALSE(audit.examples.empty());
  EXPECT_EQ(follower_->status().audit.mismatches, 2u);
  EXPECT_TRUE(Converged()) << "the master's diff did not repair the replica";
  std::string value;
  ASSERT_TRUE(replica->Get({}, follower_->column_family("meta"), "k1", &value).ok());
  EXPECT_EQ(value, "master");
}

// Stopping a master must not wait for a periodic audit to scan the whole
// database: the audit's scan is cancelled.
TEST_F(MasterFidelityTest, AStoppingMasterCancelsItsAudit) {
  MasterDb& m = OpenMaster();
  rocksdb::WriteBatch batch;
  for (int i = 0; i < 50'000; ++i) {
    ASSERT_TRUE(batch.Put(m.handles[0], "k" + std::to_string(i), std::string(100, 'v')).ok());
  }
  ASSERT_TRUE(m.db->Write({}, &batch).ok());
  MasterOptions options;
  options.audit.interval = 1ms;
  options.audit.max_bytes_per_second = 1 << 20;  // about 5 s for these 5 MB
  ASSERT_TRUE(m.Attach(options).ok());
  std::this_thread::sleep_for(200ms);  // the audit is scanning: it cannot finish in this time
  EXPECT_EQ(m.master->status().audit.runs, 0u);
  auto start = std::chrono::steady_clock::now();
  m.Detach();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s) << "the master waited for its audit";
}

// A master that lost an unsynced WAL tail reuses its sequence numbers with
// other batch boundaries: a follower whose position falls inside a batch of
// the stream cannot resume from there, it must diff.
TEST_F(MasterFidelityTest, APositionInsideABatchCannotResume) {
  MasterDb& m = OpenMaster();
  BatchLog log(BatchLogOptions{.logger = testing::QuietLogger()});
  WalTailerOptions o;
  o.logger = testing::QuietLogger();
  std::unique_ptr<WalTailer> tailer;
  ASSERT_TRUE(WalTailer::Create(m.db, m.handles, o, &log, &tailer).ok());
  tailer->Start();
  m.Put(0, "one", "1");
  const uint64_t first = m.db->GetLatestSequenceNumber();
  rocksdb::WriteBatch three;
  for (const char* k : {"a", "b", "c"}) ASSERT_TRUE(three.Put(m.handles[0], k, "v").ok());
  ASSERT_TRUE(m.db->Write(rocksdb::WriteOptions(), &three).ok());
  m.Put(0, "two", "2");
  tailer->NotifyWrite();
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return log.tailed_seq() == m.db->GetLatestSequenceNumber(); }, kDeadline));
  EXPECT_TRUE(log.CanResume(first)) << "the end of a batch";
  EXPECT_FALSE(log.CanResume(first + 1)) << "inside the batch of three";
  EXPECT_FALSE(log.CanResume(first + 2)) << "inside the batch of three";
  EXPECT_TRUE(log.CanResume(first + 3)) << "the end of the batch of three";
  EXPECT_TRUE(log.CanResume(first + 4)) << "where the tree is";
  EXPECT_FALSE(log.CanResume(first + 5)) << "beyond the master";
}

}  // namespace
}  // namespace sdiff::plugin
