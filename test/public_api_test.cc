// The public API (include/sdiff/): its flat options reach the plugin with the
// plugin's defaults, and ReplicaReader reads what a follower applied, from a
// secondary instance as another process would. test/public_api/consumer.cc
// is the embedder's view; this is the inside one.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "plugin/public_options.h"
#include "sdiff/follower.h"
#include "sdiff/master.h"
#include "sdiff/options.h"
#include "sdiff/replica_reader.h"
#include "sdiff/status.h"
#include "test/support/wait.h"

namespace sdiff {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 20s;

TEST(PublicOptionsTest, MasterDefaultsAreThePlugins) {
  const plugin::MasterOptions want;
  const plugin::MasterOptions got = plugin::FromPublic(MasterOptions());
  EXPECT_EQ(got.server.listen, want.server.listen);
  EXPECT_EQ(got.server.secret, want.server.secret);
  EXPECT_EQ(got.server.allow_unauthenticated_remote, want.server.allow_unauthenticated_remote);
  EXPECT_FALSE(got.server.tls.enabled());
  EXPECT_EQ(got.server.threads, want.server.threads);
  EXPECT_EQ(got.server.max_connections, want.server.max_connections);
  EXPECT_EQ(got.server.handshake_timeout, want.server.handshake_timeout);
  EXPECT_EQ(got.server.idle_timeout_ms, want.server.idle_timeout_ms);
  EXPECT_EQ(got.server.connection.high_water_bytes, want.server.connection.high_water_bytes);
  EXPECT_EQ(got.master_id, want.master_id);
  EXPECT_EQ(got.poll_interval, want.poll_interval);
  EXPECT_EQ(got.resume_window_bytes, want.resume_window_bytes);
  EXPECT_EQ(got.bootstrap_min_keys, want.bootstrap_min_keys);
  EXPECT_EQ(got.diff_on_connect, want.diff_on_connect);
  EXPECT_EQ(got.serve_files, want.serve_files);
  EXPECT_EQ(got.allow_writers, want.allow_writers);
  EXPECT_EQ(got.sync_writes, want.sync_writes);
  EXPECT_EQ(got.min_free_bytes, want.min_free_bytes);
  EXPECT_EQ(got.accept_changes_outside_wal, want.accept_changes_outside_wal);
  EXPECT_EQ(got.audit.interval, want.audit.interval);
  EXPECT_EQ(got.audit.max_bytes_per_second, want.audit.max_bytes_per_second);
  EXPECT_FALSE(got.progress);
  EXPECT_EQ(got.listener, nullptr);
}

TEST(PublicOptionsTest, FollowerDefaultsAreThePlugins) {
  const plugin::FollowerOptions want;
  const plugin::FollowerOptions got = plugin::FromPublic(FollowerOptions());
  EXPECT_EQ(got.db_path, want.db_path);
  EXPECT_EQ(got.create_if_missing, want.create_if_missing);
  EXPECT_EQ(got.sync_writes, want.sync_writes);
  EXPECT_EQ(got.min_free_bytes, want.min_free_bytes);
  EXPECT_EQ(got.clone_files, want.clone_files);
  EXPECT_EQ(got.client.master, want.client.master);
  EXPECT_EQ(got.client.secret, want.client.secret);
  EXPECT_FALSE(got.client.tls.enabled());
  EXPECT_EQ(got.client.connect_timeout, want.client.connect_timeout);
  EXPECT_EQ(got.client.handshake_timeout, want.client.handshake_timeout);
  EXPECT_EQ(got.client.backoff_initial, want.client.backoff_initial);
  EXPECT_EQ(got.client.backoff_max, want.client.backoff_max);
  EXPECT_EQ(got.client.repair_interval, want.client.repair_interval);
  EXPECT_EQ(got.audit.interval, want.audit.interval);
  EXPECT_EQ(got.audit.max_bytes_per_second, want.audit.max_bytes_per_second);
  EXPECT_FALSE(got.progress);
}

TEST(PublicOptionsTest, EachMasterFieldReachesThePlugin) {
  MasterOptions o;
  o.listen = "0.0.0.0:9";
  o.secret = "s";
  o.allow_unauthenticated_remote = true;
  o.tls = {"cert", "key", "ca"};
  o.threads = 3;
  o.max_connections = 4;
  o.handshake_timeout = 5ms;
  o.idle_timeout = 6ms;
  o.max_follower_backlog_bytes = 7;
  o.master_id = "m";
  o.poll_interval = 8ms;
  o.resume_window_bytes = 9;
  o.bootstrap_min_keys = 10;
  o.diff_on_connect = false;
  o.serve_files = false;
  o.allow_writers = true;
  o.sync_writes = true;
  o.min_free_bytes = 11;
  o.accept_changes_outside_wal = true;
  o.audit_interval = 12ms;
  o.audit_max_bytes_per_second = 13;
  Progress seen;
  o.progress = [&seen](const Progress& p) { seen = p; };
  plugin::MasterOptions got = plugin::FromPublic(o);
  EXPECT_EQ(got.server.listen, "0.0.0.0:9");
  EXPECT_EQ(got.server.secret, "s");
  EXPECT_TRUE(got.server.allow_unauthenticated_remote);
  EXPECT_EQ(got.server.tls.cert_file, "cert");
  EXPECT_EQ(got.server.tls.key_file, "key");
  EXPECT_EQ(got.server.tls.ca_file, "ca");
  EXPECT_EQ(got.server.threads, 3);
  EXPECT_EQ(got.server.max_connections, 4u);
  EXPECT_EQ(got.server.handshake_timeout, 5ms);
  EXPECT_EQ(got.server.idle_timeout_ms, 6);
  EXPECT_EQ(got.server.connection.high_water_bytes, 7u);
  EXPECT_EQ(got.master_id, "m");
  EXPECT_EQ(got.poll_interval, 8ms);
  EXPECT_EQ(got.resume_window_bytes, 9u);
  EXPECT_EQ(got.bootstrap_min_keys, 10u);
  EXPECT_FALSE(got.diff_on_connect);
  EXPECT_FALSE(got.serve_files);
  EXPECT_TRUE(got.allow_writers);
  EXPECT_TRUE(got.sync_writes);
  EXPECT_EQ(got.min_free_bytes, 11u);
  EXPECT_TRUE(got.accept_changes_outside_wal);
  EXPECT_EQ(got.audit.interval, 12ms);
  EXPECT_EQ(got.audit.max_bytes_per_second, 13u);
  ASSERT_TRUE(got.progress);
  got.progress({plugin::Progress::Kind::kClone, 14, 15, true});
  EXPECT_EQ(seen.kind, Progress::Kind::kClone);
  EXPECT_EQ(seen.done, 14u);
  EXPECT_EQ(seen.total, 15u);
  EXPECT_TRUE(seen.finished);
}

TEST(PublicOptionsTest, EachFollowerFieldReachesThePlugin) {
  FollowerOptions o;
  o.db_path = "/d";
  o.create_if_missing = false;
  o.sync_writes = true;
  o.min_free_bytes = 1;
  o.clone_files = false;
  o.master = "m:2";
  o.secret = "s";
  o.tls = {"cert", "key", "ca"};
  o.connect_timeout = 3ms;
  o.handshake_timeout = 4ms;
  o.backoff_initial = 5ms;
  o.backoff_max = 6ms;
  o.repair_interval = 7ms;
  o.audit_interval = 8ms;
  o.audit_max_bytes_per_second = 9;
  int calls = 0;
  o.progress = [&calls](const Progress&) { ++calls; };
  plugin::FollowerOptions got = plugin::FromPublic(o);
  EXPECT_EQ(got.db_path, "/d");
  EXPECT_FALSE(got.create_if_missing);
  EXPECT_TRUE(got.sync_writes);
  EXPECT_EQ(got.min_free_bytes, 1u);
  EXPECT_FALSE(got.clone_files);
  EXPECT_EQ(got.client.master, "m:2");
  EXPECT_EQ(got.client.secret, "s");
  EXPECT_EQ(got.client.tls.cert_file, "cert");
  EXPECT_EQ(got.client.tls.key_file, "key");
  EXPECT_EQ(got.client.tls.ca_file, "ca");
  EXPECT_EQ(got.client.connect_timeout, 3ms);
  EXPECT_EQ(got.client.handshake_timeout, 4ms);
  EXPECT_EQ(got.client.backoff_initial, 5ms);
  EXPECT_EQ(got.client.backoff_max, 6ms);
  EXPECT_EQ(got.client.repair_interval, 7ms);
  EXPECT_EQ(got.audit.interval, 8ms);
  EXPECT_EQ(got.audit.max_bytes_per_second, 9u);
  ASSERT_TRUE(got.progress);
  got.progress({});
  EXPECT_EQ(calls, 1);
}

// A RocksDB served by a public Master, and a public Follower of it, over loopback.
class PublicApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sdiff-public-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    follower_.reset();
    master_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartMaster(MasterOptions options = {}) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.WAL_ttl_seconds = 3600;
    listener_ = NewMasterListener();
    o.listeners.push_back(listener_);
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_ + "/master", &raw).ok());
    db_.reset(raw);
    options.listen = "127.0.0.1:0";
    options.listener = listener_;
    Status s = Master::Attach(db_.get(), {}, options, &master_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void StartFollower() {
    FollowerOptions options;
    options.db_path = dir_ + "/follower";
    options.master = "127.0.0.1:" + std::to_string(master_->port());
    Status s = Follower::Open(options, &follower_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void Put(const std::string& key, const std::string& value) {
    ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), key, value).ok());
    master_->NotifyWrite();
  }

  // Until the follower has applied all the master holds, and a diff has
  // made its replica consistent (what it then records for readers).
  bool CaughtUp() {
    const uint64_t seq = db_->GetLatestSequenceNumber();
    return follower_->WaitFor(
        [seq](const FollowerStatus& s) {
          return s.connected && s.diffs > 0 && s.applied_seq >= seq;
        },
        kDeadline);
  }

  std::string dir_;
  std::shared_ptr<rocksdb::EventListener> listener_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<Master> master_;
  std::unique_ptr<Follower> follower_;
};

TEST_F(PublicApiTest, AttachRefusesAListenerOfAnotherKind) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir_ + "/master", &raw).ok());
  db_.reset(raw);
  MasterOptions options;
  options.listen = "127.0.0.1:0";
  options.listener = std::make_shared<rocksdb::EventListener>();
  Status s = Master::Attach(db_.get(), {}, options, &master_);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(master_, nullptr);
}

TEST_F(PublicApiTest, StatusReportsTheFollowersSession) {
  StartMaster();
  Put("k", "v");
  StartFollower();
  ASSERT_TRUE(CaughtUp());
  std::string value;
  ASSERT_TRUE(follower_->db()
                  ->Get(rocksdb::ReadOptions(), follower_->column_family("default"), "k", &value)
                  .ok());
  EXPECT_EQ(value, "v");
  EXPECT_EQ(follower_->column_family("nonesuch"), nullptr);

  FollowerStatus f = follower_->status();
  EXPECT_EQ(f.master_id, master_->master_id());
  EXPECT_EQ(f.keys, 1u);
  EXPECT_EQ(f.connects, 1u);
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        MasterStatus m = master_->status();
        return m.sessions.size() == 1 && m.sessions[0].streaming &&
               m.sessions[0].applied_seq >= m.tailed_seq;
      },
      kDeadline));
  MasterStatus m = master_->status();
  EXPECT_EQ(m.keys, 1u);
  EXPECT_EQ(m.root.size(), 32u);
  EXPECT_EQ(m.connections, 1u);
  EXPECT_EQ(m.sessions[0].role, SessionStats::Role::kFollower);

  AuditResult audit;
  Status s = master_->Audit(&audit);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(audit.keys, 1u);
  EXPECT_EQ(audit.mismatches, 0u);
  s = follower_->Audit(&audit);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(audit.keys, 1u);
  EXPECT_EQ(audit.mismatches, 0u);
}

TEST_F(PublicApiTest, ReplicaReaderSeesWhatTheFollowerAppliedAsOfCatchUp) {
  StartMaster();
  Put("a", "1");
  StartFollower();
  ASSERT_TRUE(CaughtUp());

  std::unique_ptr<ReplicaReader> reader;
  Status s = ReplicaReader::Open(dir_ + "/follower", dir_ + "/reader", &reader);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string value;
  s = reader->Get("default", "a", &value);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(value, "1");
  uint64_t seq = 0;
  s = reader->AppliedSeq(&seq);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seq, db_->GetLatestSequenceNumber());

  Put("b", "2");
  ASSERT_TRUE(CaughtUp());
  EXPECT_TRUE(reader->Get("default", "b", &value).IsNotFound());  // not caught up yet
  s = reader->CatchUp();
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = reader->Get("default", "b", &value);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(value, "2");
  ASSERT_TRUE(reader->AppliedSeq(&seq).ok());
  EXPECT_EQ(seq, db_->GetLatestSequenceNumber());

  EXPECT_TRUE(reader->Get("default", "nonesuch", &value).IsNotFound());
  EXPECT_TRUE(reader->Get("nonesuch", "a", &value).IsInvalidArgument());
  // The follower's own metadata is not replicated data.
  EXPECT_TRUE(reader->Get("__sdiff", "state", &value).IsInvalidArgument());
}

TEST_F(PublicApiTest, ReplicaReaderOfAMissingDirectoryFails) {
  std::unique_ptr<ReplicaReader> reader;
  Status s = ReplicaReader::Open(dir_ + "/nonesuch", dir_ + "/reader", &reader);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir_ + "/nonesuch"), std::string::npos) << s.ToString();
  EXPECT_EQ(reader, nullptr);
}

TEST_F(PublicApiTest, ReplicaReaderOfAPlainDatabaseHasNoAppliedSeq) {
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir_ + "/plain", &raw).ok());
  db_.reset(raw);
  ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), "k", "v").ok());
  std::unique_ptr<ReplicaReader> reader;
  Status s = ReplicaReader::Open(dir_ + "/plain", dir_ + "/reader", &reader);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::string value;
  ASSERT_TRUE(reader->Get("default", "k", &value).ok());
  EXPECT_EQ(value, "v");
  uint64_t seq = 0;
  EXPECT_TRUE(reader->AppliedSeq(&seq).IsNotFound());
}

}  // namespace
}  // namespace sdiff
