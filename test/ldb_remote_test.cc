// sdiff-ldb against running daemons, as processes: writes through a master
// that allows writers reach a follower; diff --master reports a planted
// divergence with +, - and ~ lines and repair --master removes it; and the
// refusals (no writers allowed, wrong secret, bad flags) are one line, exit 2.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "net/hmac_authenticator.h"
#include "net/master_server.h"
#include "net/writer_client.h"
#include "plugin/inspector.h"
#include "test/support/child_process.h"
#include "test/support/daemon_test.h"
#include "test/support/memory_hub.h"
#include "test/support/rocks_util.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

class LdbRemoteTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    secret_ = dir_ + "/secret";
    WriteSecret(secret_, "a shared secret of more than sixteen bytes");
  }

  Contents Read(const std::string& path) { return ReadSecondary(path); }

  RunResult Ldb(std::vector<std::string> args) {
    args.insert(args.begin(), ProgramPath("sdiff-ldb"));
    return RunProgram(args, kDeadline);
  }

  std::string secret_;
};

TEST_F(LdbRemoteTest, WritesThroughTheMasterReachTheFollower) {
  WriteDb(dir_ + "/master", {{"seed", "1"}});
  uint16_t port = 0;
  auto master =
      StartMaster(dir_ + "/master", {"--allow-writers", "--secret-file=" + secret_}, &port);
  ASSERT_NE(port, 0) << master->err();
  std::string address = "--master=127.0.0.1:" + std::to_string(port);
  auto follower =
      ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
                           address, "--secret-file=" + secret_});
  ASSERT_TRUE(follower);

  RunResult put = Ldb({address, "--secret-file=" + secret_, "put", "k1", "v1"});
  ASSERT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(put.out, "OK\n");
  std::ofstream(dir_ + "/load.tsv") << "a\t1\nb\t2\n\nc\twith\ttabs\n";
  RunResult load = Ldb({address, "--secret-file=" + secret_, "load", dir_ + "/load.tsv"});
  ASSERT_EQ(load.code, 0) << load.err;
  EXPECT_NE(load.err.find("loaded 3 entries in 1 writes"), std::string::npos) << load.err;
  RunResult hex = Ldb({address, "--secret-file=" + secret_, "--hex", "put", "0x00ff", "0x01"});
  ASSERT_EQ(hex.code, 0) << hex.err;
  RunResult del = Ldb({address, "--secret-file=" + secret_, "delete", "seed"});
  ASSERT_EQ(del.code, 0) << del.err;

  Contents expected = {{"k1", "v1"},
                       {"a", "1"},
                       {"b", "2"},
                       {"c", "with\ttabs"},
                       {std::string("\0\xff", 2), "\x01"}};
  auto end = std::chrono::steady_clock::now() + kDeadline;
  bool converged = false;
  while (!converged && std::chrono::steady_clock::now() < end) {
    converged = Read(dir_ + "/follower") == expected;
    if (!converged) std::this_thread::sleep_for(20ms);  // polling a condition, bounded above
  }
  EXPECT_TRUE(converged) << follower->err();
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();

  RunResult diff = Ldb({"--db=" + dir_ + "/master", "diff", "--db2=" + dir_ + "/follower"});
  EXPECT_EQ(diff.code, 0) << diff.out << diff.err;
  EXPECT_EQ(diff.out, "");
}

TEST_F(LdbRemoteTest, PlantedDivergenceIsReportedAndRepaired) {
  Contents on_master = {{"same", "1"}, {"changed", "new"}, {"missing", "m"}};
  WriteDb(dir_ + "/master", on_master);
  WriteDb(dir_ + "/local", {{"same", "1"}, {"changed", "old"}, {"extra", "x"}});
  uint16_t port = 0;
  auto master = StartMaster(dir_ + "/master", {"--secret-file=" + secret_}, &port);
  ASSERT_NE(port, 0) << master->err();
  std::string address = "--master=127.0.0.1:" + std::to_string(port);
  std::string db = "--db=" + dir_ + "/local";
  std::string secret = "--secret-file=" + secret_;

  RunResult diff = Ldb({db, "diff", address, secret});
  ASSERT_EQ(diff.code, 1) << diff.err;
  EXPECT_EQ(diff.out, "~ changed\n- extra\n+ missing\n");
  EXPECT_EQ(Lines(diff.err), 1u) << diff.err;
  EXPECT_NE(diff.err.find("3 differences"), std::string::npos) << diff.err;

  RunResult dry = Ldb({db, "repair", "--dry-run", address, secret});
  ASSERT_EQ(dry.code, 0) << dry.err;
  EXPECT_EQ(dry.out, diff.out);
  EXPECT_NE(dry.err.find("would repair 3 keys"), std::string::npos) << dry.err;
  EXPECT_EQ(Ldb({db, "diff", address, secret}).code, 1) << "a dry run changed nothing";

  RunResult repair = Ldb({db, "repair", address, secret});
  ASSERT_EQ(repair.code, 0) << repair.err;
  EXPECT_EQ(repair.out, diff.out);
  EXPECT_NE(repair.err.find("repaired 3 keys"), std::string::npos) << repair.err;

  RunResult after = Ldb({db, "diff", address, secret});
  EXPECT_EQ(after.code, 0) << after.out << after.err;
  EXPECT_EQ(after.out, "");
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  EXPECT_EQ(Read(dir_ + "/local"), on_master);
  EXPECT_EQ(Ldb({"--db=" + dir_ + "/local", "diff", "--db2=" + dir_ + "/master"}).code, 0);
}

TEST_F(LdbRemoteTest, RefusalsAreOneLineAndExitTwo) {
  WriteDb(dir_ + "/master", {{"k", "v"}});
  uint16_t port = 0;
  auto master = StartMaster(dir_ + "/master", {"--secret-file=" + secret_}, &port);
  ASSERT_NE(port, 0) << master->err();
  std::string address = "--master=127.0.0.1:" + std::to_string(port);

  RunResult no_writers = Ldb({address, "--secret-file=" + secret_, "put", "a", "b"});
  EXPECT_EQ(no_writers.code, 2);
  EXPECT_EQ(Lines(no_writers.err), 1u) << no_writers.err;
  EXPECT_NE(no_writers.err.find("does not accept writers"), std::string::npos) << no_writers.err;

  std::ofstream(dir_ + "/wrong") << "another secret, also long enough\n";
  std::filesystem::permissions(dir_ + "/wrong", std::filesystem::perms::owner_read);
  RunResult wrong =
      Ldb({"--db=" + dir_ + "/master", "diff", address, "--secret-file=" + dir_ + "/wrong"});
  EXPECT_EQ(wrong.code, 2);
  EXPECT_EQ(Lines(wrong.err), 1u) << wrong.err;
  EXPECT_NE(wrong.err.find("secret"), std::string::npos) << wrong.err;

  RunResult unreachable = Ldb({"--master=127.0.0.1:1", "put", "a", "b"});
  EXPECT_EQ(unreachable.code, 2);
  EXPECT_EQ(Lines(unreachable.err), 1u) << unreachable.err;
  EXPECT_NE(unreachable.err.find("cannot connect"), std::string::npos) << unreachable.err;
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();

  for (std::vector<std::string> args :
       {std::vector<std::string>{"--db=" + dir_ + "/master", "repair"},
        {"--db=" + dir_ + "/master", "diff", "--db2=x", "--master=127.0.0.1:1"},
        {"--db=" + dir_ + "/master", "load", "file"},
        {"put", "a", "b"}}) {
    RunResult r = Ldb(args);
    EXPECT_EQ(r.code, 2) << args.back() << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << r.err;
  }

  // Master flags that need another: {flag, the one it needs}.
  for (auto [flag, needs] :
       {std::pair{"--allow-writers", "--secret-file"}, std::pair{"--sync", "--allow-writers"}}) {
    RunResult r = RunProgram({ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/master",
                              "--listen=127.0.0.1:0", flag},
                             kDeadline);
    EXPECT_EQ(r.code, 2) << flag;
    EXPECT_EQ(Lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find(needs), std::string::npos) << r.err;
  }
}

// A delete range whose end comes before its start is refused by RocksDB, which
// then takes it as a background error and refuses every later write: one bad
// Write must be refused before it reaches the master's database.
TEST_F(LdbRemoteTest, BackwardDeleteRangeIsRefusedAndTheMasterStillWrites) {
  WriteDb(dir_ + "/master", {{"a", "1"}, {"m", "2"}, {"z", "3"}});
  uint16_t port = 0;
  auto master =
      StartMaster(dir_ + "/master", {"--allow-writers", "--secret-file=" + secret_}, &port);
  ASSERT_NE(port, 0) << master->err();
  std::string address = "127.0.0.1:" + std::to_string(port);

  net::WriterClientOptions options;
  options.connect.master = address;
  ASSERT_TRUE(net::LoadSecretFile(secret_, &options.secret).ok());
  net::WriteSummary summary;
  Status s = net::WriteThroughMaster(
      options,
      [](const std::vector<FamilyInfo>& families, std::vector<Op>* ops, bool* more) {
        ops->push_back(Op{OpKind::kDeleteRange, families.at(0).tag, "y", "b"});
        *more = false;
        return Status::OK();
      },
      &summary);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("end"), std::string::npos) << s.ToString();
  EXPECT_EQ(summary.writes, 0u);

  RunResult put = Ldb({"--master=" + address, "--secret-file=" + secret_, "put", "k", "v"});
  EXPECT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  EXPECT_EQ(Read(dir_ + "/master"), (Contents{{"a", "1"}, {"k", "v"}, {"m", "2"}, {"z", "3"}}));
}

// A file written on Windows: "\r\n" line ends are not part of the values.
TEST_F(LdbRemoteTest, LoadTakesCrLfLineEnds) {
  WriteDb(dir_ + "/master", {});
  uint16_t port = 0;
  auto master =
      StartMaster(dir_ + "/master", {"--allow-writers", "--secret-file=" + secret_}, &port);
  ASSERT_NE(port, 0) << master->err();
  std::string address = "--master=127.0.0.1:" + std::to_string(port);
  std::ofstream(dir_ + "/load.tsv") << "a\t1\r\n\r\nb\t\r\n";
  RunResult load = Ldb({address, "--secret-file=" + secret_, "load", dir_ + "/load.tsv"});
  ASSERT_EQ(load.code, 0) << load.err;
  std::ofstream(dir_ + "/hex.tsv") << "63\t0x02\r\n";
  RunResult hex = Ldb({address, "--secret-file=" + secret_, "--hex", "load", dir_ + "/hex.tsv"});
  ASSERT_EQ(hex.code, 0) << hex.err;
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  EXPECT_EQ(Read(dir_ + "/master"), (Contents{{"a", "1"}, {"b", ""}, {"c", "\x02"}}));
}

// A bad line stops the load, but the writes already sent are committed: the
// summary must count them, so that the user knows where the data ends.
TEST_F(LdbRemoteTest, LoadStoppedByABadLineCountsTheWritesItSent) {
  WriteDb(dir_ + "/master", {});
  uint16_t port = 0;
  auto master =
      StartMaster(dir_ + "/master", {"--allow-writers", "--secret-file=" + secret_}, &port);
  ASSERT_NE(port, 0) << master->err();
  {
    std::ofstream file(dir_ + "/load.tsv");
    for (int i = 0; i < 1000; ++i) file << "k" << i << "\tv\n";  // one whole write
    file << "no tab here\n";
  }
  RunResult load = Ldb({"--master=127.0.0.1:" + std::to_string(port), "--secret-file=" + secret_,
                        "load", dir_ + "/load.tsv"});
  EXPECT_EQ(load.code, 2);
  EXPECT_NE(load.err.find("loaded 1000 entries in 1 writes"), std::string::npos) << load.err;
  EXPECT_NE(load.err.find(":1001: no tab"), std::string::npos) << load.err;
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  EXPECT_EQ(Read(dir_ + "/master").size(), 1000u);
}

// ---- the inspector in process, against an in-memory master ----

// A master whose data changes as the diff's repair reads it: `during_read`
// runs (once) just before the master reads the values it sends.
class ChangingHub : public MemoryHub {
 public:
  ChangingHub() : MemoryHub("m1") {}
  MasterHooks SessionHooks() override {
    MasterHooks h = MemoryHub::SessionHooks();
    h.read = [this, read = h.read](const std::vector<KeyRef>& keys,
                                   std::vector<std::optional<std::string>>* values) {
      if (auto fn = std::exchange(during_read, nullptr)) fn();
      return read(keys, values);
    };
    return h;
  }
  ServerOptions SessionOptions() override {
    ServerOptions o = MemoryHub::SessionOptions();
    if (hash_bytes) o.hash_bytes = hash_bytes;
    return o;
  }
  std::function<void()> during_read;
  uint8_t hash_bytes = 0;  // 0: the default
};

class InspectorTest : public LdbRemoteTest {
 protected:
  void TearDown() override {
    if (server_) server_->Stop();
    created_.clear();
    db_.reset();
    LdbRemoteTest::TearDown();
  }

  void StartServer(int64_t idle_timeout_ms = 15000) {
    net::MasterServerOptions o;
    o.listen = "127.0.0.1:0";
    o.idle_timeout_ms = idle_timeout_ms;
    o.logger = testing::QuietLogger();
    ASSERT_TRUE(net::MasterServer::Start(&hub_, o, &server_).ok());
  }

  void OpenLocal(const Contents& contents) {
    WriteDb(dir_ + "/local", contents);
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_ + "/local", &raw).ok());
    db_.reset(raw);
  }

  Status Inspect(bool repair, plugin::InspectResult* result,
                 std::chrono::milliseconds connect_timeout = 5s) {
    plugin::InspectOptions options;
    options.connect.connect_timeout = connect_timeout;
    options.connect.master = "127.0.0.1:" + std::to_string(server_->port());
    options.connect.deadline = 20s;
    options.repair = repair;
    plugin::FamilyResolver resolve = [this](const std::string& name, bool create,
                                            rocksdb::ColumnFamilyHandle** handle) {
      if (resolve_delay_.count() > 0) std::this_thread::sleep_for(resolve_delay_);
      *handle = nullptr;
      if (name == "default") *handle = db_->DefaultColumnFamily();
      if (auto it = created_.find(name); it != created_.end()) *handle = it->second.get();
      if (*handle == nullptr && create) {
        if (!db_->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), name, handle).ok()) {
          return Status::IOError("cannot create " + name);
        }
        created_[name].reset(*handle);
      }
      return Status::OK();
    };
    return plugin::InspectMaster(db_.get(), resolve, options, result);
  }

  // The local data of every family, by master tag.
  KeyValueMap LocalData() {
    KeyValueMap out;
    std::map<std::string, FamilyTag> tags = {{"default", 0}, {"meta", 1}, {"other", 2}};
    for (const auto& [name, tag] : tags) {
      rocksdb::ColumnFamilyHandle* handle = db_->DefaultColumnFamily();
      if (name != "default") {
        auto it = created_.find(name);
        if (it == created_.end()) continue;
        handle = it->second.get();
      }
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handle));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        out[{tag, it->key().ToString()}] = it->value().ToString();
      }
    }
    return out;
  }

  std::chrono::milliseconds resolve_delay_{0};  // a slow local database
  ChangingHub hub_;
  std::unique_ptr<net::MasterServer> server_;
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, std::unique_ptr<rocksdb::ColumnFamilyHandle>> created_;
};

// The master reads the values it sends after the diff: a key deleted there
// meanwhile comes as a delete, a key set meanwhile to our value as that
// value. Neither is a difference any more; neither may be reported as one.
TEST_F(InspectorTest, KeysThatConvergedDuringTheDiffAreNoDifference) {
  hub_.Put("same", "1");
  hub_.Put("gone", "g");  // only on the master when the diff starts
  hub_.Put("changed", "new");
  hub_.Put("added", "a");
  OpenLocal({{"same", "1"}, {"changed", "old"}});
  hub_.during_read = [this] {
    hub_.Write({Op{OpKind::kDelete, 0, "gone", ""}, Op{OpKind::kPut, 0, "changed", "old"}});
  };
  StartServer();
  plugin::InspectResult result;
  Status s = Inspect(/*repair=*/false, &result);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(result.differences,
            (std::vector<plugin::KeyDifference>{{"default", "added", DiffKind::kOnlyInB}}));
}

// Several families, one of them missing here, and one-byte hashes so that
// collisions make the master retry the diff: repair still ends equal.
TEST_F(InspectorTest, RepairOfSeveralFamiliesThroughRetriesEndsEqual) {
  hub_.hash_bytes = 1;
  Contents local;
  for (int i = 0; i < 400; ++i) {
    std::string key = "k" + std::to_string(i);
    hub_.Write({Op{OpKind::kPut, 0, key, "v"}});
    if (i % 3 == 0) local[key] = "old";
    if (i % 3 == 1) local[key] = "v";
    if (i % 50 == 0) hub_.Write({Op{OpKind::kPut, 2, key, "other"}});
  }
  for (int i = 0; i < 100; ++i) local["extra" + std::to_string(i)] = "x";
  OpenLocal(local);
  StartServer();
  plugin::InspectResult result;
  size_t expected = 400 - 400 / 3 - (400 % 3 > 1 ? 1 : 0) + 100 + 8;
  Status s = Inspect(/*repair=*/false, &result);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(result.differences.size(), expected) << "each key once, through the retries";
  EXPECT_GT(server_->stats().keys_repaired, expected) << "the diff was retried";

  s = Inspect(/*repair=*/true, &result);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(LocalData(), hub_.Data());
  EXPECT_EQ(result.differences.size(), expected);

  s = Inspect(/*repair=*/false, &result);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(result.differences.empty()) << result.differences.size();
}

// A master that speaks the protocol from a script, on a thread: for what a
// misbehaving master makes the inspector do.
class ScriptedMaster {
 public:
  using Script = std::function<void(ScriptedMaster&)>;
  explicit ScriptedMaster(Script script)
      : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        thread_([this, script = std::move(script)] {
          while (!stop_) {  // the script once per connection
            boost::system::error_code ec;
            acceptor_.accept(socket_, ec);
            if (ec) return;
            reader_ = wire::FrameReader();
            // The record layer: our hello first, then every frame in records.
            if (!net::RecordChannel::Create("", /*server_side=*/true, &records_).ok()) return;
            boost::asio::write(socket_, boost::asio::buffer(records_->hello()), ec);
            script(*this);
            socket_.close(ec);
          }
        }) {}
  ~ScriptedMaster() {
    stop_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes a blocked accept
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool stopped() const { return stop_; }

  // The next message from the inspector; false when the connection ends.
  bool Read(Message* message) {
    for (;;) {
      bool got = false;
      if (!reader_.Next(message, &got).ok()) return false;
      if (got) return true;
      char buffer[4096];
      boost::system::error_code ec;
      size_t n = socket_.read_some(boost::asio::buffer(buffer), ec);
      if (ec) return false;
      std::string plain;
      if (!records_->Open({buffer, n}, &plain).ok()) return false;
      reader_.Append(plain);
    }
  }
  bool Send(const Message& message) {
    std::string frame, sealed;
    wire::AppendFrame(message, &frame);
    records_->Seal(frame, &sealed);
    boost::system::error_code ec;
    boost::asio::write(socket_, boost::asio::buffer(sealed), ec);
    return !ec;
  }
  // Hello, Challenge (no secret), Auth, then `welcome`.
  bool Handshake(const Welcome& welcome) {
    Message m;
    if (!Read(&m)) return false;
    if (!Send(Challenge{wire::kProtocolVersion, std::string(32, 's'), ""})) return false;
    if (!Read(&m)) return false;
    return Send(welcome);
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::socket socket_{io_};
  wire::FrameReader reader_;
  std::unique_ptr<net::RecordChannel> records_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

Status InspectScripted(ScriptedMaster& master, rocksdb::DB* db) {
  plugin::InspectOptions options;
  options.connect.master = "127.0.0.1:" + std::to_string(master.port());
  options.connect.deadline = 10s;
  plugin::FamilyResolver resolve = [db](const std::string& name, bool,
                                        rocksdb::ColumnFamilyHandle** handle) {
    *handle = name == "default" ? db->DefaultColumnFamily() : nullptr;
    return Status::OK();
  };
  plugin::InspectResult result;
  return plugin::InspectMaster(db, resolve, options, &result);
}

// An inspector is always diffed: a Welcome that says "resume" would leave it
// waiting, answering pings, for a diff that never comes.
TEST_F(InspectorTest, WelcomeThatIsNotADiffIsAnError) {
  OpenLocal({{"k", "v"}});
  ScriptedMaster master([](ScriptedMaster& m) {
    if (!m.Handshake(Welcome{"", 0, StartMode::kResume, 1, {{0, "default"}}})) return;
    for (uint64_t t = 0; !m.stopped() && m.Send(Ping{0, t}); ++t) {
      std::this_thread::sleep_for(100ms);  // a live master's pings, never a diff
    }
  });
  Status s = InspectScripted(master, db_.get());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message().find("did not finish within"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("diff"), std::string::npos) << s.ToString();
}

// The master retries an incomplete diff, but not forever: neither may the
// inspector follow it forever.
TEST_F(InspectorTest, EndlessRetriesAreAnError) {
  OpenLocal({{"k", "v"}});
  ScriptedMaster master([](ScriptedMaster& m) {
    if (!m.Handshake(Welcome{"m", 0, StartMode::kDiff, 1, {{0, "default"}}})) return;
    for (uint64_t id = 1; !m.stopped(); ++id) {
      SyncStart start{id, 0, id, 2, Hash128{}, 0};
      if (!m.Send(start)) return;
      Message root;
      if (!m.Read(&root) || !m.Send(SyncDone{id, 0, /*retry=*/true})) return;
    }
  });
  Status s = InspectScripted(master, db_.get());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message().find("did not finish within"), std::string::npos) << s.ToString();
}

// A connection made just as the connect timeout fires is either used or
// reported as a timeout, never closed under the session ("Bad file descriptor").
TEST_F(InspectorTest, ConnectRacingItsTimeoutIsReportedAsOneOrTheOther) {
  hub_.Put("k", "v");
  OpenLocal({{"k", "v"}});
  StartServer();
  for (int i = 0; i < 20; ++i) {
    plugin::InspectResult result;
    Status s = Inspect(/*repair=*/false, &result, 0ms);
    EXPECT_TRUE(s.ok() || s.message().find("timed out") != std::string::npos) << s.ToString();
  }
}

// Reading the local database into a tree takes as long as the database is
// big; the master must not drop the inspector as silent meanwhile.
TEST_F(InspectorTest, SlowLocalTreeBuildOutlastsTheMastersIdleTimeout) {
  hub_.Put("k", "v");
  hub_.Put("new", "n");
  OpenLocal({{"k", "v"}});
  StartServer(/*idle_timeout_ms=*/300);
  resolve_delay_ = 400ms;  // per family: three of them
  plugin::InspectResult result;
  Status s = Inspect(/*repair=*/false, &result);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(result.differences,
            (std::vector<plugin::KeyDifference>{{"default", "new", DiffKind::kOnlyInB}}));
}

}  // namespace
}  // namespace sdiff::testing
