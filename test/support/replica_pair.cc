// A real master and follower for end-to-end tests (see replica_pair.h).
#include "test/support/replica_pair.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <thread>

#include "test/support/wait.h"

namespace sdiff::testing {

MasterDb::MasterDb(std::string path, MasterDbOptions options)
    : dir(std::move(path)), options_(std::move(options)) {
  Open();
}

MasterDb::~MasterDb() { Close(); }

void MasterDb::Open() {
  rocksdb::Options o;
  o.create_if_missing = o.create_missing_column_families = true;
  o.WAL_ttl_seconds = 3600;
  o.merge_operator = std::make_shared<ConcatOperator>();
  o.listeners.push_back(listener);
  if (options_.tune) options_.tune(&o);
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& name : options_.families) cfs.emplace_back(name, o);
  rocksdb::Status s;
  if (options_.transactions) {
    rocksdb::TransactionDB* raw = nullptr;
    s = rocksdb::TransactionDB::Open(o, rocksdb::TransactionDBOptions(), dir, cfs, &handles, &raw);
    txn_db = raw;
    db = raw;
  } else {
    s = rocksdb::DB::Open(o, dir, cfs, &handles, &db);
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
}

void MasterDb::Close() {
  master.reset();
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  handles.clear();
  delete db;
  db = nullptr;
  txn_db = nullptr;
}

void MasterDb::Reopen() {
  Close();
  Open();
}

Status MasterDb::Attach(plugin::MasterOptions options) {
  options.server.listen = master_address();
  // SDIFF_TEST_LOG=1 shows the master's log, for replaying a failing seed.
  const char* show = getenv("SDIFF_TEST_LOG");
  options.server.logger =
      show != nullptr && *show == '1' ? spdlog::default_logger() : QuietLogger();
  options.bootstrap_min_keys = 50;
  if (options.audit.interval == plugin::AuditOptions().interval) {
    options.audit.interval = std::chrono::milliseconds(0);  // unless the test asks for one
  }
  options.listener = listener;
  Status s = plugin::Master::Attach(db, handles, options, &master);
  if (s.ok()) port_ = master->port();
  return s;
}

void MasterDb::Put(int cf, const std::string& key, const std::string& value) {
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[cf], key, value).ok());
  if (master) master->NotifyWrite();
}

bool MasterDb::WaitTailed(std::chrono::milliseconds timeout) {
  return WaitUntil(
      [&] {
        plugin::MasterStatus s = master->status();
        return !s.rebuild_pending && s.tailed_seq >= db->GetLatestSequenceNumber();
      },
      timeout);
}

Status PutThroughMaster(const MasterDb& master, const std::string& secret, const std::string& key,
                        const std::string& value, net::WriteSummary* summary) {
  net::WriterClientOptions writer;
  writer.connect.master = master.master_address();
  writer.secret = secret;
  return net::WriteThroughMaster(
      writer,
      [&](const std::vector<FamilyInfo>& families, std::vector<Op>* ops, bool* more) {
        ops->push_back(Op{OpKind::kPut, families.at(0).tag, key, value});
        *more = false;
        return Status::OK();
      },
      summary);
}

plugin::FollowerOptions QuietFollowerOptions(const MasterDb& master, const std::string& path) {
  plugin::FollowerOptions o;
  o.db_path = path;
  o.client.master = master.master_address();
  o.client.backoff_initial = std::chrono::milliseconds(20);
  o.client.backoff_max = std::chrono::milliseconds(200);
  o.client.logger = QuietLogger();
  return o;
}

FamilyContents ScanFollower(plugin::Follower* follower, const std::vector<std::string>& families) {
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  for (const auto& name : families) {
    if (auto* h = follower->column_family(name)) handles.push_back(h);
  }
  return ScanAll(follower->db(), handles);
}

bool WaitConverged(MasterDb& master, plugin::Follower* follower,
                   std::chrono::milliseconds timeout) {
  std::vector<std::string> names;
  for (auto* h : master.handles) names.push_back(h->GetName());
  return WaitUntil(
      [&] {
        plugin::MasterStatus m = master.master->status();
        plugin::FollowerStatus f = follower->status();
        return f.connected && !m.rebuild_pending && m.tailed_seq == m.db_seq &&
               f.applied_seq >= m.tailed_seq && f.keys == m.keys &&
               ScanFollower(follower, names) == master.Scan();
      },
      timeout);
}

}  // namespace sdiff::testing
