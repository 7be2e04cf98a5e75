// A seeded differential test against RocksDB itself. A generator drives a
// real master database, with a real follower attached, through random mixes
// of what applications do: every kind of write, batches across families,
// empty and PutLogData batches, transactions (not two-phase: see Step), writes
// without the WAL, ingested files, flushes, compactions, tiny WAL files, and
// restarts of the master and of the follower. Every few steps it checks that
// the master's tree equals a tree built from a scan of the master at the
// tailer's position, and that a scan of the follower equals the master's
// (and, at the end of a run, that RocksDB's own `ldb` reads the same
// follower data, an oracle independent of this code).
//
// A seed reproduces a run's steps exactly; a failure prints its seed, the
// step and the first differing key. SDIFF_DIFF_SEEDS (default 100) sets how
// many seeds run, from SDIFF_DIFF_FIRST_SEED (default 1), spread over ten
// test cases so that ctest runs them in parallel.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/utilities/transaction_db.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "plugin/tree_scan.h"
#include "test/support/child_process.h"
#include "test/support/replica_pair.h"
#include "test/support/wait.h"

namespace sdiff::plugin {
namespace {

using namespace std::chrono_literals;
using testing::FamilyContents;
using testing::MasterDb;
using testing::MasterDbOptions;

constexpr int kShards = 10;
constexpr auto kDeadline = 20s;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// The first key where two scans differ, for a failure message.
std::string FirstDifference(const FamilyContents& master, const FamilyContents& follower) {
  auto describe = [](const auto& it) {
    return it->first.first + ":" + it->first.second + " = " +
           (it->second.size() > 40 ? it->second.substr(0, 40) + "..." : it->second);
  };
  auto m = master.begin();
  auto f = follower.begin();
  for (; m != master.end() && f != follower.end(); ++m, ++f) {
    if (m->first < f->first) return "only the master has " + describe(m);
    if (f->first < m->first) return "only the follower has " + describe(f);
    if (m->second != f->second) return "master " + describe(m) + ", follower " + describe(f);
  }
  if (m != master.end()) return "only the master has " + describe(m);
  if (f != follower.end()) return "only the follower has " + describe(f);
  return "none";
}

// One seeded run: the generator, the databases and the checks.
class SeededRun {
 public:
  SeededRun(uint64_t seed, std::string dir) : seed_(seed), dir_(std::move(dir)), rng_(seed) {}

  void Go() {
    MasterDbOptions options;
    options.transactions = rng_() % 2 == 0;
    const bool tiny_wal = tiny_wal_ = rng_() % 2 == 0;
    const bool keep_wal = rng_() % 3 != 0;
    options.tune = [tiny_wal, keep_wal](rocksdb::Options* o) {
      if (tiny_wal) {  // a memtable of 64 KiB: frequent flushes, each a new WAL file
        o->write_buffer_size = 64 << 10;
        o->max_total_wal_size = 256 << 10;
      }
      if (!keep_wal) o->WAL_ttl_seconds = 0;  // flushed WAL files go at once
    };
    Log("transactions=" + std::to_string(options.transactions) +
        " tiny_wal=" + std::to_string(tiny_wal) + " keep_wal=" + std::to_string(keep_wal));
    master_ = std::make_unique<MasterDb>(dir_ + "/master", options);
    ASSERT_NO_FATAL_FAILURE(AttachMaster());
    OpenFollower();
    const int steps = 40 + static_cast<int>(rng_() % 40);
    for (step_ = 0; step_ < steps; ++step_) {
      ASSERT_NO_FATAL_FAILURE(Step());
      if (rng_() % 4 == 0) {
        ASSERT_NO_FATAL_FAILURE(Check());
      }
    }
    ASSERT_NO_FATAL_FAILURE(Check());
    ASSERT_NO_FATAL_FAILURE(CheckWithLdb());
    held_.clear();
    follower_.reset();
    master_.reset();
  }

 private:
  // ---- the generator ----

  void Step() {
    switch (rng_() % 20) {
      case 0:
      case 1:
      case 2:
      case 3:
        return Write(RandomBatch(1 + rng_() % 3));
      case 4:
      case 5:
        return Write(RandomBatch(2 + rng_() % 12));
      case 6: {
        rocksdb::WriteBatch empty;
        Log("empty batch");
        return Write(&empty);
      }
      case 7: {
        rocksdb::WriteBatch log_only;
        ASSERT_TRUE(log_only.PutLogData("note " + std::to_string(step_)).ok());
        Log("PutLogData alone");
        return Write(&log_only);
      }
      case 8:
        return SingleDeleteStep();
      case 9:
        return master_->txn_db ? Transaction() : Write(RandomBatch(2));
      case 10:
        return master_->txn_db ? EndHeldTransaction() : Write(RandomBatch(2));
      case 11: {
        rocksdb::WriteOptions no_wal;
        no_wal.disableWAL = true;
        Log("disableWAL write");
        return Write(RandomBatch(1 + rng_() % 2), no_wal);
      }
      case 12:
        return Ingest();
      case 13: {
        Log("flush");
        for (auto* h : master_->handles) ASSERT_TRUE(db()->Flush({}, h).ok());
        return;
      }
      case 14: {
        Log("compact");
        auto* h = Family();
        ASSERT_TRUE(db()->CompactRange({}, h, nullptr, nullptr).ok());
        return;
      }
      case 15:
        if (rng_() % 3 == 0) return RestartMaster();
        return Write(RandomBatch(1));
      case 16:
        if (rng_() % 3 == 0) return RestartFollower();
        return Write(RandomBatch(1));
      case 17:
        return Write(RandomBatch(1 + rng_() % 3, /*large=*/true));
      default:
        return Write(RandomBatch(1 + rng_() % 5));
    }
  }

  rocksdb::DB* db() { return master_->db; }
  rocksdb::ColumnFamilyHandle* Family() {
    return master_->handles[rng_() % master_->handles.size()];
  }
  // Keys "k000".."k149": overwritten, merged, deleted and range-deleted.
  std::string Key() {
    char buf[8];
    snprintf(buf, sizeof(buf), "k%03d", static_cast<int>(rng_() % 150));
    return buf;
  }
  std::string Value(bool large = false) {
    size_t size = large ? (64 << 10) + rng_() % (1 << 20) : rng_() % 64;
    std::string v(size, 'a' + static_cast<char>(rng_() % 26));
    if (!v.empty()) v[0] = static_cast<char>(rng_());  // binary too
    return v + std::to_string(step_);
  }

  // Puts, deletes, merges and range deletes over the "k" keys of random
  // families, with PutLogData among them now and then.
  rocksdb::WriteBatch* RandomBatch(int ops, bool large = false) {
    batch_.Clear();
    std::ostringstream what;
    what << "batch of " << ops << (large ? " (large values)" : "") << ":";
    for (int i = 0; i < ops; ++i) {
      auto* h = Family();
      switch (rng_() % 8) {
        case 0:
          batch_.Delete(h, Key());
          what << " del";
          break;
        case 1:
          batch_.Merge(h, Key(), "m" + std::to_string(step_));
          what << " merge";
          break;
        case 2: {
          if (master_->txn_db) break;  // a TransactionDB refuses DeleteRange
          std::string a = Key(), b = Key();
          if (b < a) std::swap(a, b);
          batch_.DeleteRange(h, a, b);
          what << " range[" << a << "," << b << ")";
          break;
        }
        case 3:
          batch_.PutLogData("log");
          what << " log";
          break;
        default:
          batch_.Put(h, Key(), Value(large));
          what << " put";
      }
    }
    Log(what.str());
    return &batch_;
  }

  void Write(rocksdb::WriteBatch* batch, rocksdb::WriteOptions options = {}) {
    rocksdb::Status s = db()->Write(options, batch);
    ASSERT_TRUE(s.ok()) << Where() << s.ToString();
    master_->master->NotifyWrite();
  }

  // SingleDelete's contract: the key was put once since it last went, and
  // never overwritten or merged. The "s" keys are used only that way.
  void SingleDeleteStep() {
    std::string key = "s" + std::to_string(rng_() % 20);
    auto* h = Family();
    auto id = std::make_pair(h->GetID(), key);
    if (single_.count(id)) {
      Log("single delete " + key);
      ASSERT_TRUE(db()->SingleDelete({}, h, key).ok());
      single_.erase(id);
    } else {
      Log("put once " + key);
      ASSERT_TRUE(db()->Put({}, h, key, Value()).ok());
      single_.insert(id);
    }
    master_->master->NotifyWrite();
  }

  // A write-committed transaction: committed without Prepare(), prepared
  // and committed (with a commit-time batch now and then) or rolled back, or
  // prepared and held, to end in a later step, after restarts too. A held
  // transaction locks its keys, so it writes "p" keys of its own.
  void Transaction() {
    const int mode = static_cast<int>(rng_() % 4);
    std::string name = "t" + std::to_string(seed_) + "-" + std::to_string(step_);
    Log("transaction " + name +
        (mode == 0   ? ": commit without prepare"
         : mode == 1 ? ": prepare, commit"
         : mode == 2 ? ": prepare, roll back"
                     : ": prepare, hold"));
    std::unique_ptr<rocksdb::Transaction> txn(master_->txn_db->BeginTransaction({}));
    for (int i = 0, n = 1 + static_cast<int>(rng_() % 4); i < n; ++i) {
      std::string key = mode == 3 ? "p" + std::to_string(step_) + "-" + std::to_string(i) : Key();
      switch (rng_() % 5) {
        case 0:
          ASSERT_TRUE(txn->Delete(Family(), key).ok()) << Where();
          break;
        case 1:
          ASSERT_TRUE(txn->Merge(Family(), key, "t" + std::to_string(step_)).ok()) << Where();
          break;
        default:
          ASSERT_TRUE(txn->Put(Family(), key, Value()).ok()) << Where();
      }
    }
    if (mode != 0) {
      ASSERT_TRUE(txn->SetName(name).ok()) << Where();
      ASSERT_TRUE(txn->Prepare().ok()) << Where();
      master_->master->NotifyWrite();
    }
    if (mode == 3) {
      held_.emplace(name, std::move(txn));
      return;
    }
    if (mode == 1 && rng_() % 2 == 0) {
      ASSERT_TRUE(txn->GetCommitTimeWriteBatch()->Put(Family(), Key(), Value()).ok()) << Where();
    }
    ASSERT_TRUE((mode == 2 ? txn->Rollback() : txn->Commit()).ok()) << Where();
    master_->master->NotifyWrite();
  }

  void EndHeldTransaction() {
    if (held_.empty()) return Transaction();
    auto it = held_.begin();
    std::advance(it, static_cast<long>(rng_() % held_.size()));
    const bool commit = rng_() % 3 != 0;
    Log((commit ? "commit held " : "roll back held ") + it->first);
    ASSERT_TRUE((commit ? it->second->Commit() : it->second->Rollback()).ok()) << Where();
    held_.erase(it);
    master_->master->NotifyWrite();
  }

  // An SST file of "i" keys (their own range, so that the ingestion may go
  // below the memtable without a sequence number) or of "k" keys.
  void Ingest() {
    const bool own_range = rng_() % 2 == 0;
    Log(own_range ? "ingest own range" : "ingest over k keys");
    auto* h = Family();
    std::set<std::string> keys;
    for (int i = 0, n = 1 + static_cast<int>(rng_() % 10); i < n; ++i) {
      keys.insert(own_range ? "i" + std::to_string(rng_() % 1000) : Key());
    }
    std::string path = dir_ + "/ingest-" + std::to_string(step_) + ".sst";
    rocksdb::SstFileWriter writer{rocksdb::EnvOptions(), rocksdb::Options()};
    ASSERT_TRUE(writer.Open(path).ok());
    for (const auto& k : keys) ASSERT_TRUE(writer.Put(k, Value()).ok());
    ASSERT_TRUE(writer.Finish().ok());
    rocksdb::Status s = db()->IngestExternalFile(h, {path}, rocksdb::IngestExternalFileOptions());
    ASSERT_TRUE(s.ok()) << Where() << s.ToString();
    master_->master->NotifyWrite();
  }

  void RestartMaster() {
    Log("restart master");
    if (tiny_wal_) {
      // RocksDB 7.8 asserts in SwitchWAL (db_impl_write.cc:1565, aborting the
      // process) once max_total_wal_size forces a WAL switch while a
      // transaction recovered at open is still prepared: end them first here.
      while (!held_.empty()) ASSERT_NO_FATAL_FAILURE(EndHeldTransaction());
    }
    master_->Detach();
    // Prepared transactions outlive the restart: RocksDB recovers them from
    // the WAL, and the application finds them again by name.
    std::vector<std::string> names;
    for (auto& [name, txn] : held_) names.push_back(name);
    held_.clear();
    master_->Reopen();
    for (const std::string& name : names) {
      rocksdb::Transaction* txn = master_->txn_db->GetTransactionByName(name);
      ASSERT_NE(txn, nullptr) << Where() << "RocksDB lost prepared transaction " << name;
      held_.emplace(name, std::unique_ptr<rocksdb::Transaction>(txn));
    }
    AttachMaster();
  }

  void AttachMaster() {
    Status s = master_->Attach(MasterOptions());
    ASSERT_TRUE(s.ok()) << Where() << s.ToString();
  }

  void RestartFollower() {
    Log("restart follower");
    follower_.reset();
    OpenFollower();
  }

  void OpenFollower() {
    Status s =
        Follower::Open(testing::QuietFollowerOptions(*master_, dir_ + "/follower"), &follower_);
    ASSERT_TRUE(s.ok()) << Where() << s.ToString();
  }

  // ---- the checks ----

  void Check() {
    // The master's tree against its data, both at the tailer's position (the
    // test is the only writer, so once the tailer reaches the database's
    // newest sequence, both stand still).
    ASSERT_TRUE(master_->WaitTailed(kDeadline))
        << Where() << "the tailer did not reach sequence " << db()->GetLatestSequenceNumber()
        << " (it is at " << master_->master->status().tailed_seq << ")";
    TaggedFamilies families;
    for (auto* h : master_->handles) families.emplace_back(static_cast<FamilyTag>(h->GetID()), h);
    MerkleTree scanned;
    ASSERT_TRUE(ScanIntoTree(db(), nullptr, families, {}, &scanned).ok());
    MasterStatus status = master_->master->status();
    if (status.root != scanned.root_hash() || status.keys != scanned.size()) {
      AuditResult audit;  // finds (and corrects) the differing keys, to name them
      Status s = master_->master->Audit(&audit);
      std::string first = audit.examples.empty() ? "?" : audit.examples.front();
      FAIL() << Where() << "the master's tree (" << status.keys << " keys) differs from its data ("
             << scanned.size() << " keys) at sequence " << status.tailed_seq << ": "
             << audit.mismatches << " keys differ, first " << first << " " << s.ToString();
    }
    // The follower against the master, once it has caught up.
    if (!testing::WaitConverged(*master_, follower_.get(), kDeadline)) {
      FollowerStatus f = follower_->status();
      FAIL() << Where() << "the follower did not converge (applied " << f.applied_seq << ", master "
             << master_->master->status().tailed_seq << ", connected " << f.connected
             << ", last error '" << f.last_error
             << "'): first difference: " << FirstDifference(master_->Scan(), FollowerScan());
    }
  }

  FamilyContents FollowerScan() {
    std::vector<std::string> names;
    for (auto* h : master_->handles) names.push_back(h->GetName());
    return testing::ScanFollower(follower_.get(), names);
  }

  // RocksDB's own ldb reads the follower's database (as a secondary, beside
  // the live follower): what it finds must be the master's data.
  void CheckWithLdb() {
    FamilyContents seen;
    for (auto* h : master_->handles) {
      testing::RunResult r = testing::RunProgram(
          {"/usr/bin/ldb", "--db=" + dir_ + "/follower", "--secondary_path=" + dir_ + "/ldb",
           "--column_family=" + h->GetName(), "--hex", "scan"},
          30s);
      ASSERT_EQ(r.code, 0) << Where() << "ldb: " << r.err;
      std::istringstream lines(r.out);
      std::string line;
      while (std::getline(lines, line)) {
        auto sep = line.find(" : ");
        ASSERT_NE(sep, std::string::npos) << line;
        seen[{h->GetName(), Unhex(line.substr(0, sep))}] = Unhex(line.substr(sep + 3));
      }
    }
    EXPECT_EQ(seen, master_->Scan())
        << Where()
        << "ldb reads the follower differently: " << FirstDifference(master_->Scan(), seen);
  }

  static std::string Unhex(const std::string& hex) {
    std::string out;
    for (size_t i = 2; i + 1 < hex.size(); i += 2) {  // after "0x"
      out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
    return out;
  }

  // SDIFF_DIFF_TRACE=1 prints each step as it runs: a seed that aborts the
  // process (an assertion inside RocksDB) prints no failure message.
  void Log(const std::string& what) {
    history_.push_back(std::to_string(step_) + ": " + what);
    if (trace_)
      fprintf(stderr, "seed %llu step %s\n", static_cast<unsigned long long>(seed_),
              history_.back().c_str());
  }
  std::string Where() {
    std::string recent;
    for (size_t i = history_.size() > 8 ? history_.size() - 8 : 0; i < history_.size(); ++i) {
      recent += "\n    " + history_[i];
    }
    return "seed " + std::to_string(seed_) + " (SDIFF_DIFF_FIRST_SEED=" + std::to_string(seed_) +
           " SDIFF_DIFF_SEEDS=1), step " + std::to_string(step_) + ", last steps:" + recent +
           "\n  ";
  }

  const uint64_t seed_;
  const std::string dir_;
  const bool trace_ = EnvNumber("SDIFF_DIFF_TRACE", 0) != 0;
  std::mt19937_64 rng_;
  int step_ = 0;
  bool tiny_wal_ = false;  // a 64 KiB memtable and max_total_wal_size
  std::vector<std::string> history_;
  rocksdb::WriteBatch batch_;
  std::set<std::pair<uint32_t, std::string>> single_;  // "s" keys put once, not yet deleted
  std::unique_ptr<MasterDb> master_;
  std::unique_ptr<Follower> follower_;
  // Prepared transactions not yet ended, by name; destroyed before master_.
  std::map<std::string, std::unique_ptr<rocksdb::Transaction>> held_;
};

class DifferentialTest : public ::testing::TestWithParam<int> {};

TEST_P(DifferentialTest, ReplicaEqualsMasterForEverySeed) {
  const uint64_t first = EnvNumber("SDIFF_DIFF_FIRST_SEED", 1);
  const uint64_t seeds = EnvNumber("SDIFF_DIFF_SEEDS", 100);
  for (uint64_t i = GetParam(); i < seeds; i += kShards) {
    char tmpl[] = "/tmp/sdiff-differential-XXXXXX";
    std::string dir = mkdtemp(tmpl);
    {
      SeededRun run(first + i, dir);
      run.Go();
    }
    std::filesystem::remove_all(dir);
    if (HasFatalFailure() || HasNonfatalFailure()) return;  // the seed is in the message
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, DifferentialTest, ::testing::Range(0, kShards));

}  // namespace
}  // namespace sdiff::plugin
