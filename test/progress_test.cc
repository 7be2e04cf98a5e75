// Progress of long work: the reports the plugin makes (tree build, bootstrap,
// repair) and how the daemons draw them (a bar on a terminal, log lines
// otherwise). Real RocksDB in temporary directories, loopback, deadlines.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <spdlog/spdlog.h>
#include <stdio.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "plugin/follower.h"
#include "plugin/master.h"
#include "test/support/memory_hub.h"
#include "test/support/rocks_util.h"
#include "tools/progress_renderer.h"

namespace sdiff {
namespace {

using namespace std::chrono_literals;
using plugin::Progress;

constexpr auto kDeadline = 20s;

using testing::QuietLogger;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sdiff-progress-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Keeps every report; waits for one that matches.
class Recorder {
 public:
  plugin::ProgressFn Callback() {
    return [this](const Progress& p) {
      std::lock_guard lock(mu_);
      reports_.push_back(p);
      changed_.notify_all();
    };
  }
  bool WaitFor(const std::function<bool(const Progress&)>& match) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kDeadline,
                             [&] { return std::any_of(reports_.begin(), reports_.end(), match); });
  }
  std::vector<Progress> reports() {
    std::lock_guard lock(mu_);
    return reports_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Progress> reports_;
};

// ---- the plugin's reports ----

TEST(ProgressTest, MasterReportsItsTreeBuild) {
  TempDir dir;
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir.sub("master"), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  constexpr int kKeys = 70000;  // past one report interval (65536 keys)
  rocksdb::WriteBatch batch;
  for (int i = 0; i < kKeys; ++i) batch.Put("key" + std::to_string(i), "v");
  ASSERT_TRUE(db->Write(rocksdb::WriteOptions(), &batch).ok());

  Recorder recorder;
  plugin::MasterOptions options;
  options.server.listen = "127.0.0.1:0";
  options.server.logger = QuietLogger();
  options.progress = recorder.Callback();
  std::unique_ptr<plugin::Master> master;
  Status s = plugin::Master::Attach(db.get(), {}, options, &master);
  ASSERT_TRUE(s.ok()) << s.ToString();

  std::vector<Progress> reports = recorder.reports();  // Attach built the tree before returning
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].kind, Progress::Kind::kTreeBuild);
  EXPECT_EQ(reports[0].done, 65536u);
  EXPECT_FALSE(reports[0].finished);
  EXPECT_GT(reports[0].total, 0u);  // RocksDB's estimate
  EXPECT_EQ(reports[1].done, static_cast<uint64_t>(kKeys));
  EXPECT_TRUE(reports[1].finished);
  master.reset();
}

TEST(ProgressTest, FollowerReportsItsBootstrapThenARepair) {
  TempDir dir;
  testing::MemoryHub hub("progress-master");
  constexpr int kKeys = 20000;  // past the master's bootstrap_min_keys (10000)
  for (int b = 0; b < kKeys / 100; ++b) {
    std::vector<Op> ops;
    for (int i = 0; i < 100; ++i) {
      ops.push_back(Op{OpKind::kPut, 0, "key" + std::to_string(b * 100 + i), "value"});
    }
    hub.Write(std::move(ops));
  }
  net::MasterServerOptions server_options;
  server_options.listen = "127.0.0.1:0";
  server_options.logger = QuietLogger();
  std::unique_ptr<net::MasterServer> server;
  ASSERT_TRUE(net::MasterServer::Start(&hub, server_options, &server).ok());

  auto open = [&](Recorder* recorder) {
    plugin::FollowerOptions options;
    options.db_path = dir.sub("replica");
    options.client.master = "127.0.0.1:" + std::to_string(server->port());
    options.client.backoff_initial = 20ms;
    options.client.logger = QuietLogger();
    options.progress = recorder->Callback();
    std::unique_ptr<plugin::Follower> follower;
    Status s = plugin::Follower::Open(std::move(options), &follower);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return follower;
  };

  Recorder bootstrap;
  auto follower = open(&bootstrap);
  ASSERT_TRUE(follower);
  EXPECT_TRUE(bootstrap.WaitFor([](const Progress& p) {
    return p.kind == Progress::Kind::kBootstrap && p.finished && p.done == kKeys;
  }));
  ASSERT_TRUE(
      follower->WaitFor([](const plugin::FollowerStatus& s) { return s.diffs > 0; }, kDeadline));
  follower.reset();

  // Damage the stopped replica: its next connection resumes, then the diff
  // after catching up rewrites what was changed.
  constexpr int kDamaged = 3000;
  {
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir.sub("replica"), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& name : names) families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(rocksdb::DBOptions(), dir.sub("replica"), families, &handles, &raw).ok());
    for (int i = 0; i < kDamaged; ++i) {
      raw->Put(rocksdb::WriteOptions(), "key" + std::to_string(i), "stale");
    }
    for (auto* h : handles) raw->DestroyColumnFamilyHandle(h);
    delete raw;
  }
  Recorder repair;
  follower = open(&repair);
  ASSERT_TRUE(follower);
  EXPECT_TRUE(repair.WaitFor([](const Progress& p) {
    return p.kind == Progress::Kind::kRepair && p.finished && p.done == kDamaged;
  })) << follower->status().last_error;
  for (const Progress& p : repair.reports()) {
    EXPECT_NE(p.kind, Progress::Kind::kBootstrap);
  }
  follower.reset();
  server->Stop();
}

// ---- how the daemons draw them ----

class RendererTest : public ::testing::Test {
 protected:
  tools::ProgressRenderer::Options Options(bool terminal) {
    tools::ProgressRenderer::Options o;
    o.terminal = terminal;
    o.out = out_;
    o.log = [this](const std::string& line) { lines_.push_back(line); };
    o.now = [this] { return now_; };
    return o;
  }
  std::string Drawn() {
    std::fflush(out_);
    return std::string(buffer_, size_);
  }
  void TearDown() override {
    std::fclose(out_);
    free(buffer_);
  }

  char* buffer_ = nullptr;
  size_t size_ = 0;
  FILE* out_ = open_memstream(&buffer_, &size_);
  std::vector<std::string> lines_;
  tools::ProgressRenderer::Clock::time_point now_;
};

TEST_F(RendererTest, LogLinesEveryFewSecondsThenDone) {
  tools::ProgressRenderer r(Options(false));
  r.Report({Progress::Kind::kTreeBuild, 0, 1000, false});
  now_ += 2s;
  r.Report({Progress::Kind::kTreeBuild, 200, 1000, false});
  EXPECT_TRUE(lines_.empty()) << "a line only after a few seconds of work";
  now_ += 3s;
  r.Report({Progress::Kind::kTreeBuild, 500, 1000, false});
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0], "building the tree: 500 of ~1000 keys (50%), 100 keys/s");
  now_ += 1s;
  r.Report({Progress::Kind::kTreeBuild, 600, 1000, false});
  EXPECT_EQ(lines_.size(), 1u);
  now_ += 4s;
  r.Report({Progress::Kind::kTreeBuild, 1200, 1000, false});  // beyond the estimate
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[1], "building the tree: 1200 of ~1000 keys (99%), 120 keys/s");
  r.Report({Progress::Kind::kTreeBuild, 1250, 1000, true});
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_EQ(lines_[2], "building the tree: done, 1250 keys in 10.0 s");
  EXPECT_TRUE(Drawn().empty()) << "no bar when not on a terminal";
}

TEST_F(RendererTest, QuickWorkShowsNothing) {
  for (bool terminal : {false, true}) {
    tools::ProgressRenderer r(Options(terminal));
    r.Report({Progress::Kind::kRepair, 10, 0, false});
    now_ += 100ms;
    r.Report({Progress::Kind::kRepair, 20, 0, true});
  }
  EXPECT_TRUE(lines_.empty());
  EXPECT_TRUE(Drawn().empty());
}

TEST_F(RendererTest, TerminalBarRedrawnInPlaceThenErased) {
  tools::ProgressRenderer r(Options(true));
  r.Report({Progress::Kind::kTreeBuild, 0, 1000, false});
  now_ += 1s;
  r.Report({Progress::Kind::kTreeBuild, 500, 1000, false});
  std::string drawn = Drawn();
  EXPECT_EQ(drawn,
            "\rbuilding the tree [###############---------------]  50% 500/~1000 keys\x1b[K");
  now_ += 10ms;
  r.Report({Progress::Kind::kTreeBuild, 510, 1000, false});
  EXPECT_EQ(Drawn(), drawn) << "redrawn at most every 100 ms";
  now_ += 1s;
  r.Report({Progress::Kind::kBootstrap, 0, 0, false});
  now_ += 1s;
  r.Report({Progress::Kind::kBootstrap, 3000, 0, false});
  EXPECT_NE(Drawn().find("\rbootstrapping: 3000 keys, 3000 keys/s\x1b[K"), std::string::npos);
  r.Report({Progress::Kind::kBootstrap, 3000, 0, true});
  EXPECT_EQ(Drawn().substr(Drawn().size() - 4), "\r\x1b[K");
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0], "bootstrapping: done, 3000 keys in 1.0 s");
}

}  // namespace
}  // namespace sdiff
