// Acknowledged writes and read-your-writes (issue 14, sections 3 and 4) with a
// real RocksDB master and followers on loopback: followers report what they
// apply as they apply it, Master::WaitForFollowers waits on those reports,
// and a replica (in process or read by another as a secondary) waits for a
// master sequence.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <filesystem>

#include "engine/testing/link.h"
#include "plugin/follower.h"
#include "plugin/master.h"
#include "sdiff/replica_reader.h"
#include "test/support/rocks_util.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 15s;

class AckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-ack-XXXXXX";
    dir_ = mkdtemp(tmpl);
    rocksdb::Options o;
    o.create_if_missing = true;
    o.WAL_ttl_seconds = 3600;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(o, dir_ + "/master", &raw);
    ASSERT_TRUE(s.ok()) << s.ToString();
    db_.reset(raw);
    MasterOptions mo;
    mo.server.listen = "127.0.0.1:0";
    mo.server.logger = testing::QuietLogger();
    // Pings 10 s apart: a follower's position reaches the master only by the
    // reports it sends as it applies (and the Ping that verifies a diff).
    mo.server.ping_interval_ms = 10000;
    ASSERT_TRUE(Master::Attach(db_.get(), {db_->DefaultColumnFamily()}, mo, &master_).ok());
  }
  void TearDown() override {
    followers_.clear();
    master_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  Follower& OpenFollower(const std::string& name) {
    FollowerOptions o;
    o.db_path = dir_ + "/" + name;
    o.client.master = "127.0.0.1:" + std::to_string(master_->port());
    o.client.backoff_initial = 20ms;
    o.client.backoff_max = 200ms;
    o.client.logger = testing::QuietLogger();
    std::unique_ptr<Follower> f;
    Status s = Follower::Open(o, &f);
    EXPECT_TRUE(s.ok()) << s.ToString();
    followers_.push_back(std::move(f));
    return *followers_.back();
  }

  // Writes `key` on the master; returns the sequence it committed at.
  uint64_t Put(const std::string& key, const std::string& value) {
    EXPECT_TRUE(db_->Put(rocksdb::WriteOptions(), key, value).ok());
    master_->NotifyWrite();
    return db_->GetLatestSequenceNumber();
  }

  static std::string Read(Follower& f, const std::string& key) {
    std::string value;
    rocksdb::Status s = f.db()->Get(rocksdb::ReadOptions(), key, &value);
    return s.ok() ? value : "<" + s.ToString() + ">";
  }

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<Master> master_;
  std::vector<std::unique_ptr<Follower>> followers_;
};

TEST_F(AckTest, WaitForFollowersReturnsOnceTheFollowerHoldsTheWrite) {
  Follower& f = OpenFollower("f1");
  for (int i = 0; i < 20; ++i) {
    uint64_t seq = Put("k" + std::to_string(i), "v" + std::to_string(i));
    Status s = master_->WaitForFollowers(seq, 1, kDeadline);
    ASSERT_TRUE(s.ok()) << s.ToString();
    // Acknowledged means applied: the follower's database has it now.
    EXPECT_EQ(Read(f, "k" + std::to_string(i)), "v" + std::to_string(i));
  }
  auto sessions = master_->status().server.sessions;
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_GE(sessions[0].acked_seq, db_->GetLatestSequenceNumber());
}

TEST_F(AckTest, WaitForFollowersTimesOutWithoutAFollower) {
  uint64_t seq = Put("k", "v");
  auto start = std::chrono::steady_clock::now();
  Status s = master_->WaitForFollowers(seq, 1, 300ms);
  EXPECT_TRUE(s.IsTimedOut()) << s.ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_TRUE(master_->WaitForFollowers(seq, 0, 10ms).ok()) << "no follower asked for";
}

TEST_F(AckTest, AStoppedFollowerCountsNoMore) {
  OpenFollower("f1");
  uint64_t seq = Put("k", "v");
  ASSERT_TRUE(master_->WaitForFollowers(seq, 1, kDeadline).ok());
  followers_.clear();
  ASSERT_TRUE(
      testing::WaitUntil([&] { return master_->status().server.sessions.empty(); }, kDeadline));
  Status s = master_->WaitForFollowers(seq, 1, 200ms);
  EXPECT_TRUE(s.IsTimedOut()) << "a follower that left holds nothing for the master: "
                              << s.ToString();
  s = master_->WaitForFollowers(Put("k2", "v2"), 1, 200ms);
  EXPECT_TRUE(s.IsTimedOut()) << s.ToString();
}

TEST_F(AckTest, WaitsForAsManyFollowersAsAskedFor) {
  Follower& a = OpenFollower("f1");
  Follower& b = OpenFollower("f2");
  uint64_t seq = Put("k", "v");
  Status s = master_->WaitForFollowers(seq, 2, kDeadline);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Read(a, "k"), "v");
  EXPECT_EQ(Read(b, "k"), "v");
  s = master_->WaitForFollowers(seq, 3, 200ms);
  EXPECT_TRUE(s.IsTimedOut()) << s.ToString();
}

TEST_F(AckTest, FollowerWaitsForASequence) {
  Follower& f = OpenFollower("f1");
  uint64_t seq = 0;
  for (int i = 0; i < 50; ++i) seq = Put("k" + std::to_string(i), "v");
  Status s = f.WaitForSequence(seq, kDeadline);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Read(f, "k49"), "v");
  s = f.WaitForSequence(seq + 1000, 200ms);
  EXPECT_TRUE(s.IsTimedOut()) << s.ToString();
}

TEST_F(AckTest, ReplicaReaderWaitsForASequence) {
  Follower& f = OpenFollower("f1");
  ASSERT_TRUE(f.WaitForSequence(Put("first", "1"), kDeadline).ok());
  std::unique_ptr<ReplicaReader> reader;
  Status s = ReplicaReader::Open(dir_ + "/f1", dir_ + "/reader", &reader);
  ASSERT_TRUE(s.ok()) << s.ToString();
  uint64_t seq = Put("second", "2");
  s = reader->WaitForSequence(seq, kDeadline);
  ASSERT_TRUE(s.ok()) << s.ToString();
  uint64_t applied = 0;
  ASSERT_TRUE(reader->AppliedSeq(&applied).ok());
  EXPECT_GE(applied, seq);
  std::string value;
  ASSERT_TRUE(reader->Get("default", "second", &value).ok());
  EXPECT_EQ(value, "2");
  s = reader->WaitForSequence(seq + 1000, 200ms);
  EXPECT_TRUE(s.IsTimedOut()) << s.ToString();
}

// A follower's directory is first a RocksDB with the default family alone:
// RocksDB makes the others, sdiff's metadata family among them, just after.
// A reader opened in between (sdiff-ldb get --min-seq run as the follower
// starts) must still see the follower's state once there is one.
TEST_F(AckTest, ReplicaReaderOpenedBeforeTheFollowerMadeItsFamilySeesItsState) {
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_ + "/f2", &raw).ok());
    delete raw;
  }
  std::unique_ptr<ReplicaReader> reader;
  Status s = ReplicaReader::Open(dir_ + "/f2", dir_ + "/reader", &reader);
  ASSERT_TRUE(s.ok()) << s.ToString();
  uint64_t applied = 0;
  EXPECT_TRUE(reader->AppliedSeq(&applied).IsNotFound());

  OpenFollower("f2");  // an empty database: it adds its family and follows
  uint64_t seq = Put("k", "v");
  s = reader->WaitForSequence(seq, kDeadline);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string value;
  ASSERT_TRUE(reader->Get("default", "k", &value).ok());
  EXPECT_EQ(value, "v");
}

}  // namespace
}  // namespace sdiff::plugin

// The sessions alone, deterministic: what the master counts as held.
namespace sdiff::testing {
namespace {

class AckSessionTest : public ::testing::Test {
 protected:
  void WriteKeys(int from, int to, Link* link = nullptr) {
    for (int i = from; i < to; ++i) {
      const Batch& batch = master_.Write({Op{OpKind::kPut, 0, "k" + std::to_string(i), "v"}});
      if (link != nullptr) link->OnMasterBatch(batch);
    }
  }

  std::mt19937_64 rng_{14};
  MemoryMaster master_{"m1"};
  MemoryFollower follower_;
};

TEST_F(AckSessionTest, AFollowerThatDiffsCountsOnceItAnswersAPingAfterTheDiff) {
  WriteKeys(0, 50);
  Link link(&master_, &follower_, &rng_);
  link.Start();
  link.Tick(0);
  ASSERT_TRUE(link.RunUntilQuiet());
  ASSERT_EQ(link.stats().syncs, 1);
  ASSERT_EQ(follower_.data(), master_.data());
  // Its stream position was 50 from the Welcome on, before the diff had
  // brought it the first 50 writes: not yet what it holds.
  EXPECT_EQ(link.server().follower_applied_seq(), 50u);
  EXPECT_EQ(link.server().acked_seq(), 0u);
  link.Tick(1);  // the Ping that confirms the diff, not waiting for the interval
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_EQ(link.server().acked_seq(), 50u);

  // From now on each write is reported as it is applied, without a Ping.
  uint64_t to_master = link.bytes_to_master();
  WriteKeys(50, 60, &link);
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_EQ(link.server().acked_seq(), 60u);
  EXPECT_GT(link.bytes_to_master(), to_master);
}

TEST_F(AckSessionTest, AResumedFollowerCountsAtOnce) {
  WriteKeys(0, 20);
  {
    Link first(&master_, &follower_, &rng_);
    first.Start();
    first.Tick(0);
    ASSERT_TRUE(first.RunUntilQuiet());
  }
  WriteKeys(20, 30);
  follower_.Restart();
  Link second(&master_, &follower_, &rng_);
  second.Start();
  ASSERT_TRUE(second.RunUntilQuiet());
  ASSERT_EQ(second.stats().resumes, 1);
  EXPECT_EQ(second.server().acked_seq(), 30u) << "no Ping was needed";
}

// A change outside the stream (a rebuild after a WAL gap, an audit's
// correction) makes the master ask every follower to diff: until that diff is
// done, what a follower applied no longer says it holds every write.
TEST_F(AckSessionTest, AfterACorrectionAFollowerCountsOnlyOnceItsDiffIsConfirmed) {
  WriteKeys(0, 20);
  Link link(&master_, &follower_, &rng_);
  link.Start();
  link.Tick(0);
  ASSERT_TRUE(link.RunUntilQuiet());
  link.Tick(1);
  ASSERT_TRUE(link.RunUntilQuiet());
  ASSERT_EQ(link.server().acked_seq(), 20u);
  const int syncs = link.stats().syncs;

  // The master's data changes without a batch on the stream (as a rebuild
  // finds it), then the correction; the stream goes on meanwhile.
  master_.Write({Op{OpKind::kPut, 0, "outside", "v"}});  // never handed to the link
  link.server().RequestCorrection();
  EXPECT_EQ(link.server().acked_seq(), 0u) << "at once, before the diff";
  WriteKeys(21, 25, &link);
  EXPECT_EQ(link.server().acked_seq(), 0u);
  ASSERT_TRUE(link.RunUntilQuiet());
  ASSERT_GT(link.stats().syncs, syncs);
  ASSERT_EQ(follower_.data(), master_.data()) << "the diff brought the change";
  EXPECT_EQ(link.server().acked_seq(), 0u) << "not before a Ping after the diff";
  link.Tick(2);
  ASSERT_TRUE(link.RunUntilQuiet());
  EXPECT_EQ(link.server().acked_seq(), 25u);
}

}  // namespace
}  // namespace sdiff::testing
