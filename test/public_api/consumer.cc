// An embedder of the public API: it includes only include/sdiff/ (and RocksDB
// and the standard library), and is built with include/ as its only project
// include directory (check_deps.cmake proves nothing else is reached). It
// attaches a master to a fresh RocksDB, follows it over loopback, and reads
// the replica from a ReplicaReader. Exits 0 when all of it works.
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <sdiff/follower.h>
#include <sdiff/master.h>
#include <sdiff/options.h>
#include <sdiff/replica_reader.h>
#include <sdiff/status.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;

int Fail(const std::string& what) {
  std::fprintf(stderr, "consumer: %s\n", what.c_str());
  return 1;
}

// Polls the follower's replica until it holds `key` = `want`, or the deadline passes.
bool FollowerHas(sdiff::Follower* follower, const std::string& key, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < deadline) {
    rocksdb::ColumnFamilyHandle* family = follower->column_family("default");
    std::string value;
    if (family != nullptr &&
        follower->db()->Get(rocksdb::ReadOptions(), family, key, &value).ok() && value == want) {
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

int Run(const std::string& dir) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.WAL_ttl_seconds = 600;  // followers resume from the WAL
  std::shared_ptr<rocksdb::EventListener> listener = sdiff::NewMasterListener();
  db_options.listeners.push_back(listener);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status rs = rocksdb::DB::Open(db_options, dir + "/master", &raw);
  if (!rs.ok()) return Fail("opening the master's database: " + rs.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);

  sdiff::MasterOptions master_options;
  master_options.listen = "127.0.0.1:0";
  master_options.listener = listener;
  std::unique_ptr<sdiff::Master> master;
  sdiff::Status s =
      sdiff::Master::Attach(db.get(), {db->DefaultColumnFamily()}, master_options, &master);
  if (!s.ok()) return Fail("Master::Attach: " + s.ToString());

  if (!db->Put(rocksdb::WriteOptions(), "greeting", "hello").ok()) return Fail("put");
  master->NotifyWrite();

  sdiff::FollowerOptions follower_options;
  follower_options.db_path = dir + "/follower";
  follower_options.master = "127.0.0.1:" + std::to_string(master->port());
  std::unique_ptr<sdiff::Follower> follower;
  s = sdiff::Follower::Open(follower_options, &follower);
  if (!s.ok()) return Fail("Follower::Open: " + s.ToString());

  // Caught up, and a diff finished: the replica is consistent and says so.
  const uint64_t seq = db->GetLatestSequenceNumber();
  if (!follower->WaitFor(
          [seq](const sdiff::FollowerStatus& st) {
            return st.connected && st.diffs > 0 && st.applied_seq >= seq;
          },
          kDeadline)) {
    return Fail("the follower did not catch up: " + follower->status().last_error);
  }
  if (!FollowerHas(follower.get(), "greeting", "hello")) return Fail("the follower lacks the key");

  std::unique_ptr<sdiff::ReplicaReader> reader;
  s = sdiff::ReplicaReader::Open(follower_options.db_path, dir + "/reader", &reader);
  if (!s.ok()) return Fail("ReplicaReader::Open: " + s.ToString());
  std::string value;
  s = reader->Get("default", "greeting", &value);
  if (!s.ok() || value != "hello") return Fail("ReplicaReader::Get: " + s.ToString());
  uint64_t applied = 0;
  s = reader->AppliedSeq(&applied);
  if (!s.ok() || applied < seq) return Fail("ReplicaReader::AppliedSeq: " + s.ToString());

  // A later write reaches the reader after a CatchUp.
  if (!db->Put(rocksdb::WriteOptions(), "greeting", "again").ok()) return Fail("put");
  master->NotifyWrite();
  if (!FollowerHas(follower.get(), "greeting", "again")) {
    return Fail("the follower lacks the update");
  }
  s = reader->CatchUp();
  if (!s.ok()) return Fail("ReplicaReader::CatchUp: " + s.ToString());
  s = reader->Get("default", "greeting", &value);
  if (!s.ok() || value != "again") return Fail("ReplicaReader::Get after CatchUp: " + s.ToString());

  sdiff::MasterStatus status = master->status();
  std::printf("consumer: master %s port %u, %zu key(s), root %s, %zu follower(s)\n",
              master->master_id().c_str(), static_cast<unsigned>(master->port()), status.keys,
              status.root.c_str(), status.sessions.size());
  reader.reset();
  follower.reset();
  master.reset();  // before the database it tails
  return 0;
}

}  // namespace

int main() {
  char tmpl[] = "/tmp/sdiff-consumer-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail("mkdtemp");
  const std::string dir = tmpl;
  int rc = Run(dir);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (rc == 0) std::printf("consumer: OK\n");
  return rc;
}
