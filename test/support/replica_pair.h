// A real RocksDB master (plugin::Master attached to a DB the test opens as an
// application would) and a real RocksDB follower (plugin::Follower), over
// loopback: what the end-to-end tests drive. Equality is a full scan of both
// databases, every replicated column family, matched by name.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/utilities/transaction_db.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/writer_client.h"
#include "plugin/follower.h"
#include "plugin/master.h"
#include "test/support/rocks_util.h"

namespace sdiff::testing {

struct MasterDbOptions {
  std::vector<std::string> families = {"default", "meta", "other"};
  // Adjusts the options every family and the DB open with (comparators,
  // compaction filters, WAL and memtable sizes). Default: none.
  std::function<void(rocksdb::Options*)> tune;
  bool transactions = false;  // open a WRITE_COMMITTED TransactionDB
};

// An application's database with a Master attached. Not thread-safe.
class MasterDb {
 public:
  // Opens (creating) the database in `dir`; a failure fails the test.
  MasterDb(std::string dir, MasterDbOptions options = {});
  ~MasterDb();  // detaches, then closes

  // Attaches a Master that serves on loopback: the first time on a port the
  // OS picks, after a Reopen on the same port. Quiet logs, no periodic audit
  // (unless `options` sets another interval than the default),
  // bootstrap from 50 keys; `options` may change any of it.
  Status Attach(plugin::MasterOptions options = {});
  void Detach() { master.reset(); }
  // Detaches, closes and opens the database again (not re-attached).
  void Reopen();

  void Put(int cf, const std::string& key, const std::string& value);
  FamilyContents Scan() { return ScanAll(db, handles); }
  // Until the tailer has taken in every write the database holds (and
  // finished any rebuild an ingested file asked for).
  bool WaitTailed(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  std::string master_address() const { return "127.0.0.1:" + std::to_string(port_); }

  const std::string dir;
  rocksdb::DB* db = nullptr;                 // owned
  rocksdb::TransactionDB* txn_db = nullptr;  // db, when opened with transactions
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::shared_ptr<plugin::MasterListener> listener = std::make_shared<plugin::MasterListener>();
  std::unique_ptr<plugin::Master> master;

 private:
  void Open();
  void Close();
  MasterDbOptions options_;
  uint16_t port_ = 0;
};

// One put of `key` = `value` in the first family, through `master`'s writer
// role with `secret`: WriteThroughMaster's result and summary.
Status PutThroughMaster(const MasterDb& master, const std::string& secret, const std::string& key,
                        const std::string& value, net::WriteSummary* summary);

// Options for a follower of `master` in `path` that reconnects quickly and
// logs nothing.
plugin::FollowerOptions QuietFollowerOptions(const MasterDb& master, const std::string& path);

// Every replicated family of a live follower, read through its own DB.
FamilyContents ScanFollower(plugin::Follower* follower, const std::vector<std::string>& families);

// Waits until the follower has applied everything the master's tree holds
// and a scan of each equals the other's. False at the deadline.
bool WaitConverged(MasterDb& master, plugin::Follower* follower, std::chrono::milliseconds timeout);

}  // namespace sdiff::testing
