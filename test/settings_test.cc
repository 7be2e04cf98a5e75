// The settings of the programs people run, spawned as processes: --config
// files (and the examples under deploy/config), log levels and JSON logs, WAL
// retention, RocksDB OPTIONS files, the column families replicated, and their
// one-line errors and exit statuses.

// GCC 12 under -fsanitize=address warns -Wmaybe-uninitialized inside
// libstdc++'s <regex> compiler (std::function moves): a false positive in the
// library's own code, which would bury real warnings in the sanitizer builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/utilities/options_util.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "test/support/child_process.h"
#include "test/support/daemon_test.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = kProgramDeadline;

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The options the database at `path` last opened with (its newest OPTIONS file).
rocksdb::DBOptions LatestOptions(const std::string& path,
                                 std::vector<rocksdb::ColumnFamilyDescriptor>* families = nullptr) {
  rocksdb::DBOptions db;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  rocksdb::ConfigOptions config;
  EXPECT_TRUE(rocksdb::LoadLatestOptions(config, path, &db, &descriptors).ok()) << path;
  if (families != nullptr) *families = descriptors;
  return db;
}

// Every file of a directory with its size and modification time: equal
// before and after means nothing was written.
std::map<std::string, std::pair<uintmax_t, std::filesystem::file_time_type>> Files(
    const std::string& dir) {
  std::map<std::string, std::pair<uintmax_t, std::filesystem::file_time_type>> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    files[entry.path().filename()] = {entry.file_size(), entry.last_write_time()};
  }
  return files;
}

class SettingsTest : public DaemonTest {
 protected:
  // A database whose families `families` (beside "default") each hold one
  // key, "FAMILY-key" = "FAMILY-value".
  void WriteFamilies(const std::string& path, const std::vector<std::string>& families) {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, path, &db).ok());
    for (const std::string& name : families) {
      rocksdb::ColumnFamilyHandle* handle = nullptr;
      ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), name, &handle).ok());
      EXPECT_TRUE(db->Put(rocksdb::WriteOptions(), handle, name + "-key", name + "-value").ok());
      db->DestroyColumnFamilyHandle(handle);
    }
    delete db;
  }
  // Starts a master with `extra` flags, waits for it to serve, stops it.
  std::string RunMaster(const std::string& db, const std::vector<std::string>& extra) {
    uint16_t port = 0;
    auto master = StartMaster(db, extra, &port);
    EXPECT_NE(port, 0) << master->err();
    EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
    return master->err();
  }

  std::string WriteConfig(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
};

// A setting in the file applies; the same flag on the command line wins.
TEST_F(SettingsTest, ConfigFileSetsFlagsAndTheCommandLineWins) {
  WriteDb(dir_ + "/a", NumberedKeys(1));
  WriteDb(dir_ + "/b", NumberedKeys(1));
  std::string config = WriteConfig("master.conf",
                                   "# a comment\n"
                                   "db = " +
                                       dir_ +
                                       "/a\n"
                                       "listen = \"127.0.0.1:0\"\n"
                                       "audit-interval = 0\n");
  for (const auto& [extra, served] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{}, dir_ + "/a"}, {{"--db=" + dir_ + "/b"}, dir_ + "/b"}}) {
    std::vector<std::string> argv = {ProgramPath("sdiff-rocks-master"), "--config", config};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto master = ChildProcess::Start(argv);
    ASSERT_TRUE(master);
    EXPECT_TRUE(master->WaitForOutput(
        [](const std::string& out, const std::string&) {
          return out.find('\n') != std::string::npos;
        },
        kDeadline))
        << master->err();
    EXPECT_EQ(master->out().rfind("serving " + served + " on port ", 0), 0u) << master->out();
    EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
  }

  // sdiff-ldb reads its global flags from the file as well.
  RunResult scan = RunProgram({ProgramPath("sdiff-ldb"), "--config",
                               WriteConfig("ldb.conf", "db = " + dir_ + "/a\n"), "scan"},
                              kDeadline);
  ASSERT_TRUE(scan.code.has_value());
  EXPECT_EQ(*scan.code, 0) << scan.err;
  EXPECT_EQ(scan.out, "key0 ==> value0\n");
}

// A missing file, a directory, an unknown setting, a bad value or a line that
// is not `name = value`: one line naming the problem, exit 2, before anything
// is opened.
TEST_F(SettingsTest, BadConfigFileExitsTwoWithOneLine) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {dir_ + "/missing.conf", "missing.conf: cannot read"},
      {dir_, dir_ + ": cannot read"},
      {WriteConfig("unknown.conf", "db = x\nno-such-setting = 1\n"),
       "unknown setting \"no-such-setting\""},
      {WriteConfig("section.conf", "[nowhere]\ndb = x\n"), "unknown section [nowhere]"},
      {WriteConfig("garbage.conf", "this is not a setting\n"),
       "unknown setting \"this is not a setting\""},
      {WriteConfig("value.conf", "audit-interval = soon\n"), "audit-interval"},
  };
  const std::vector<std::vector<std::string>> programs = {
      {ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/db"},
      {ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/db", "--master=127.0.0.1:1"},
      {ProgramPath("sdiff-ldb"), "--db=" + dir_ + "/db", "scan"}};
  for (const auto& program : programs) {
    for (const auto& [file, says] : files) {
      if (program[0].find("ldb") != std::string::npos && says == "audit-interval") continue;
      std::vector<std::string> argv = program;
      argv.insert(argv.begin() + 1, {"--config", file});
      RunResult r = RunProgram(argv, kDeadline);
      ASSERT_TRUE(r.code.has_value()) << program[0];
      EXPECT_EQ(*r.code, 2) << program[0] << " " << file << ": " << r.err;
      EXPECT_EQ(Lines(r.err), 1u) << program[0] << " " << file << ": " << r.err;
      EXPECT_NE(r.err.find(says), std::string::npos) << program[0] << ": " << r.err;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/db"));  // nothing created
}

// The settings named in an example, commented out or not, and whether they
// are flags of `program` (its --help lists each as --NAME).
void ExpectEverySettingIsAFlag(const std::string& example, const std::string& program) {
  RunResult help = RunProgram({ProgramPath(program), "--help"}, kDeadline);
  ASSERT_EQ(help.code, 0) << help.err;
  std::regex setting(R"(^#? ?([a-z][a-z-]*) = \S+$)");
  std::istringstream lines(ReadFile(example));
  int settings = 0;
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_match(line, m, setting)) continue;
    ++settings;
    std::regex flag("--" + m[1].str() + "[ ,{]");
    EXPECT_TRUE(std::regex_search(help.out, flag))
        << example << ": " << m[1] << " is not a flag of " << program;
  }
  EXPECT_GE(settings, 10) << example;
}

// The examples under deploy/config start the daemons, with only the paths and
// ports that belong to the machine overridden on the command line, and every
// setting they show (commented or not) is a flag.
TEST_F(SettingsTest, ExampleConfigsStartAMasterAndAFollower) {
  const std::string examples = std::string(SDIFF_SOURCE_DIR) + "/deploy/config/";
  ExpectEverySettingIsAFlag(examples + "master.conf.example", "sdiff-rocks-master");
  ExpectEverySettingIsAFlag(examples + "follower.conf.example", "sdiff-rocks-follower");

  WriteSecret(dir_ + "/secret", "the example's secret, long enough");
  uint16_t port = 0;
  auto master = StartMaster(dir_ + "/master",
                            {"--config", examples + "master.conf.example",
                             "--secret-file=" + dir_ + "/secret", "--metrics=127.0.0.1:0"},
                            &port);
  ASSERT_NE(port, 0) << master->err();
  auto follower = ChildProcess::Start(
      {ProgramPath("sdiff-rocks-follower"), "--config", examples + "follower.conf.example",
       "--db=" + dir_ + "/follower", "--master=127.0.0.1:" + std::to_string(port),
       "--secret-file=" + dir_ + "/secret", "--metrics=127.0.0.1:0"});
  ASSERT_TRUE(follower);
  EXPECT_TRUE(follower->WaitForOutput(
      [](const std::string&, const std::string& err) {
        return err.find("connected to master") != std::string::npos;
      },
      kDeadline))
      << follower->out() << follower->err();
  EXPECT_EQ(follower->out().rfind("following 127.0.0.1:", 0), 0u) << follower->out();
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

// With --log-format=json every line either daemon writes on stderr is a JSON
// object with time (ISO 8601, UTC), level, program and message, the message
// escaped: here a warning naming a secret file whose path holds a quote and a
// backslash.
TEST_F(SettingsTest, JsonLogsAreOneObjectALine) {
  WriteDb(dir_ + "/master", NumberedKeys(10));
  const std::string secret = dir_ + "/se\"cr\\et";
  WriteSecret(secret, "the master's secret, long enough");
  std::filesystem::permissions(secret, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);  // a warning to log
  uint16_t port = 0;
  auto master =
      StartMaster(dir_ + "/master", {"--log-format=json", "--secret-file=" + secret}, &port);
  ASSERT_NE(port, 0) << master->err();
  auto follower =
      ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
                           "--master=127.0.0.1:" + std::to_string(port), "--secret-file=" + secret,
                           "--log-format", "json"});
  ASSERT_TRUE(follower);
  EXPECT_TRUE(follower->WaitForOutput(
      [](const std::string&, const std::string& err) {
        return err.find("connected to master") != std::string::npos;
      },
      kDeadline))
      << follower->err();
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();

  const std::regex iso_utc(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  for (const auto& [program, err] : std::vector<std::pair<std::string, std::string>>{
           {"sdiff-rocks-master", master->err()}, {"sdiff-rocks-follower", follower->err()}}) {
    std::istringstream lines(err);
    std::vector<nlohmann::json> logs;
    for (std::string line; std::getline(lines, line);) {
      nlohmann::json log = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      ASSERT_TRUE(log.is_object()) << program << " wrote a line that is not JSON: " << line;
      EXPECT_EQ(log.size(), 4u) << line;
      ASSERT_TRUE(log["time"].is_string() && log["level"].is_string() && log["message"].is_string())
          << line;
      EXPECT_TRUE(std::regex_match(log["time"].get<std::string>(), iso_utc)) << line;
      EXPECT_EQ(log["program"], program) << line;
      logs.push_back(log);
    }
    ASSERT_GE(logs.size(), 3u) << program << ":\n" << err;
    EXPECT_TRUE(std::any_of(logs.begin(), logs.end(), [](const nlohmann::json& log) {
      return log["message"] == "SIGTERM: stopping";
    })) << program;
    EXPECT_EQ(logs.front()["level"], "warn") << program;
    EXPECT_EQ(logs.front()["message"].get<std::string>().rfind("secret file " + secret + " is ", 0),
              0u)
        << program << ": " << logs.front();
  }
}

// --log-level drops the lines below it; off drops them all.
TEST_F(SettingsTest, LogLevelFiltersLines) {
  WriteDb(dir_ + "/master", NumberedKeys(1));
  WriteSecret(dir_ + "/secret", "the master's secret, long enough");
  std::filesystem::permissions(dir_ + "/secret", std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);  // a warning to log
  for (const char* level : {"info", "warn", "off"}) {
    uint16_t port = 0;
    auto master = StartMaster(dir_ + "/master",
                              {"--log-level", level, "--secret-file=" + dir_ + "/secret"}, &port);
    ASSERT_NE(port, 0) << master->err();
    ASSERT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
    const std::string& err = master->err();
    bool info = err.find(" info ") != std::string::npos;
    bool warning = err.find(" warning ") != std::string::npos;
    EXPECT_EQ(info, std::string(level) == "info") << level << ":\n" << err;
    EXPECT_EQ(warning, std::string(level) != "off") << level << ":\n" << err;
    if (std::string(level) == "off") {
      EXPECT_EQ(err, "");
    }
  }
}

TEST_F(SettingsTest, BadLogFlagsExitTwoWithOneLine) {
  const std::vector<std::vector<std::string>> programs = {
      {ProgramPath("sdiff-rocks-master"), "--db=" + dir_ + "/db"},
      {ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/db", "--master=127.0.0.1:1"},
      {ProgramPath("sdiff-ldb"), "--db=" + dir_ + "/db", "scan"}};
  for (const auto& program : programs) {
    for (const char* flag : {"--log-level=loud", "--log-level=warning", "--log-format=xml"}) {
      std::vector<std::string> argv = program;
      argv.insert(argv.begin() + 1, flag);
      RunResult r = RunProgram(argv, kDeadline);
      ASSERT_TRUE(r.code.has_value()) << program[0];
      EXPECT_EQ(*r.code, 2) << program[0] << " " << flag << ": " << r.err;
      EXPECT_EQ(Lines(r.err), 1u) << program[0] << " " << flag << ": " << r.err;
      EXPECT_NE(r.err.find(std::string(flag).substr(0, std::string(flag).find('='))),
                std::string::npos)
          << r.err;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/db"));
}

// --wal-ttl-seconds and --wal-size-limit-mb reach the database (RocksDB
// writes the options it opened with into the directory); 600 s by default;
// both 0 draws the master's warning, naming the flags.
TEST_F(SettingsTest, WalRetentionFlagsReachTheDatabase) {
  const std::string db = dir_ + "/master";
  WriteDb(db, NumberedKeys(1));
  RunMaster(db, {});
  EXPECT_EQ(LatestOptions(db).WAL_ttl_seconds, 600u);
  EXPECT_EQ(LatestOptions(db).WAL_size_limit_MB, 0u);

  RunMaster(db, {"--wal-ttl-seconds=1234", "--wal-size-limit-mb=7"});
  EXPECT_EQ(LatestOptions(db).WAL_ttl_seconds, 1234u);
  EXPECT_EQ(LatestOptions(db).WAL_size_limit_MB, 7u);

  std::string err = RunMaster(db, {"--wal-ttl-seconds=0"});
  EXPECT_EQ(LatestOptions(db).WAL_ttl_seconds, 0u);
  EXPECT_NE(err.find("WAL_ttl_seconds and WAL_size_limit_MB are 0"), std::string::npos) << err;
  EXPECT_NE(err.find("--wal-ttl-seconds or --wal-size-limit-mb"), std::string::npos) << err;
  EXPECT_NE(err.find("DBOptions::WAL_ttl_seconds"), std::string::npos) << err;
  EXPECT_EQ(RunMaster(db, {}).find("WAL_ttl_seconds and"), std::string::npos);

  for (const char* bad : {"--wal-ttl-seconds=-1", "--wal-size-limit-mb=lots"}) {
    RunResult r = RunProgram(
        {ProgramPath("sdiff-rocks-master"), "--db=" + db, "--listen=127.0.0.1:0", bad}, kDeadline);
    ASSERT_TRUE(r.code.has_value()) << bad;
    EXPECT_EQ(*r.code, 2) << bad << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << bad << ": " << r.err;
  }
}

// --options-file opens the database with a RocksDB OPTIONS file: its DB and
// family options apply; its WAL retention stands unless the flags are given.
// The master and sdiff-ldb take it.
TEST_F(SettingsTest, OptionsFileOpensTheDatabase) {
  const std::string db = dir_ + "/master";
  WriteDb(db, NumberedKeys(1));
  const std::string file = WriteConfig("OPTIONS",
                                       "[Version]\n"
                                       "  rocksdb_version=7.8.3\n"
                                       "  options_file_version=1.1\n"
                                       "[DBOptions]\n"
                                       "  max_open_files=77\n"
                                       "  WAL_ttl_seconds=99\n"
                                       "[CFOptions \"default\"]\n"
                                       "  write_buffer_size=1234567\n");
  RunMaster(db, {"--options-file=" + file});
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  rocksdb::DBOptions opened = LatestOptions(db, &families);
  EXPECT_EQ(opened.max_open_files, 77);
  EXPECT_EQ(opened.WAL_ttl_seconds, 99u);  // the file's, not the daemon's default
  ASSERT_EQ(families.size(), 1u);
  EXPECT_EQ(families[0].options.write_buffer_size, 1234567u);

  RunMaster(db, {"--options-file=" + file, "--wal-ttl-seconds=5"});
  EXPECT_EQ(LatestOptions(db).WAL_ttl_seconds, 5u);  // the flag wins over the file
  EXPECT_EQ(LatestOptions(db).max_open_files, 77);

  RunResult scan = RunProgram(
      {ProgramPath("sdiff-ldb"), "--db=" + db, "--options-file=" + file, "scan"}, kDeadline);
  ASSERT_TRUE(scan.code.has_value());
  EXPECT_EQ(*scan.code, 0) << scan.err;
  EXPECT_EQ(scan.out, "key0 ==> value0\n");

  // The OPTIONS file RocksDB wrote into the database is one too.
  std::string written;
  for (const auto& entry : std::filesystem::directory_iterator(db)) {
    std::string name = entry.path().filename();
    if (name.rfind("OPTIONS-", 0) == 0 && (written.empty() || name > written)) written = name;
  }
  ASSERT_FALSE(written.empty());
  scan = RunProgram(
      {ProgramPath("sdiff-ldb"), "--db=" + db, "--options-file=" + db + "/" + written, "scan"},
      kDeadline);
  ASSERT_TRUE(scan.code.has_value());
  EXPECT_EQ(*scan.code, 0) << scan.err;
}

// A missing or invalid options file: one line naming it, and the database
// is not touched (RocksDB is not even opened).
TEST_F(SettingsTest, BadOptionsFileExitsWithOneLineAndTouchesNothing) {
  const std::string db = dir_ + "/master";
  WriteDb(db, NumberedKeys(1));
  const auto before = Files(db);
  const std::vector<std::string> files = {
      dir_ + "/missing", WriteConfig("garbage", "not an options file\n"),
      WriteConfig("unknown", "[DBOptions]\n  no_such_option=1\n[CFOptions \"default\"]\n"),
      WriteConfig("value", "[DBOptions]\n  max_open_files=many\n[CFOptions \"default\"]\n"),
      WriteConfig("comparator",
                  "[DBOptions]\n[CFOptions \"default\"]\n  comparator=no.such.Comparator\n")};
  for (const std::string& file : files) {
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {ProgramPath("sdiff-rocks-master"), "--db=" + db, "--listen=127.0.0.1:0",
              "--options-file=" + file},
             {ProgramPath("sdiff-ldb"), "--db=" + db, "--options-file=" + file, "scan"},
             {ProgramPath("sdiff-ldb"), "--db=" + db, "--options-file=" + file, "put", "k", "v"}}) {
      RunResult r = RunProgram(argv, kDeadline);
      ASSERT_TRUE(r.code.has_value()) << argv[0];
      EXPECT_EQ(*r.code, 2) << argv[0] << " " << file;
      EXPECT_EQ(Lines(r.err), 1u) << argv[0] << " " << file << ": " << r.err;
      EXPECT_NE(r.err.find("--options-file " + file + ": "), std::string::npos) << r.err;
    }
  }
  EXPECT_EQ(Files(db), before);
}

// sdiff-rocks-follower --options-file opens the replica with a RocksDB
// OPTIONS file, on each way a replica comes to be: received key by key (the
// master's families created as it announces them) and copied from the
// master's files (which the master offers from 10000 keys on). A family the
// file does not name gets RocksDB's defaults, and so does sdiff's own, whatever
// the file says; the follower still replicates.
TEST_F(SettingsTest, FollowerOptionsFileOpensTheReplica) {
  const std::string db = dir_ + "/master";
  const Contents keys = NumberedKeys(10000);
  WriteDb(db, keys);
  WriteFamilies(db, {"meta", "other"});
  const std::string file = WriteConfig("OPTIONS",
                                       "[Version]\n"
                                       "  rocksdb_version=7.8.3\n"
                                       "  options_file_version=1.1\n"
                                       "[DBOptions]\n"
                                       "  max_open_files=77\n"
                                       "[CFOptions \"default\"]\n"
                                       "  write_buffer_size=1234567\n"
                                       "[CFOptions \"meta\"]\n"
                                       "  write_buffer_size=2345678\n"
                                       "[CFOptions \"__sdiff\"]\n"
                                       "  write_buffer_size=3456789\n");
  uint16_t port = 0;
  auto master = StartMaster(db, {}, &port);
  ASSERT_NE(port, 0) << master->err();
  const size_t kDefaultWriteBuffer = rocksdb::ColumnFamilyOptions().write_buffer_size;
  for (const char* clone : {"--no-clone", "--clone"}) {
    SCOPED_TRACE(clone);
    const std::string replica = dir_ + "/replica" + clone;
    auto follower = ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + replica,
                                         "--master=127.0.0.1:" + std::to_string(port),
                                         "--options-file=" + file, clone});
    ASSERT_TRUE(follower);
    auto end = std::chrono::steady_clock::now() + kDeadline;
    while (ReadSecondary(replica) != keys && std::chrono::steady_clock::now() < end) {
      follower->WaitForOutput([](const std::string&, const std::string&) { return false; }, 100ms);
    }
    EXPECT_EQ(ReadSecondary(replica), keys) << follower->err();
    EXPECT_EQ(follower->err().find("copied the master's files") != std::string::npos,
              std::string(clone) == "--clone")
        << follower->err();
    EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
    // Read once stopped: a live replica may delete files under sdiff-ldb's open.
    RunResult scan = RunProgram({ProgramPath("sdiff-ldb"), "--db=" + replica, "scan"}, kDeadline);
    EXPECT_NE(scan.out.find("meta:meta-key ==> meta-value\n"), std::string::npos) << scan.err;
    EXPECT_NE(scan.out.find("other:other-key ==> other-value\n"), std::string::npos) << scan.err;

    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    EXPECT_EQ(LatestOptions(replica, &families).max_open_files, 77);
    std::map<std::string, size_t> write_buffers;
    for (const auto& family : families) {
      write_buffers[family.name] = family.options.write_buffer_size;
    }
    EXPECT_EQ(write_buffers, (std::map<std::string, size_t>{{"default", 1234567},
                                                            {"meta", 2345678},
                                                            {"other", kDefaultWriteBuffer},
                                                            {"__sdiff", kDefaultWriteBuffer}}));
  }
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

// A bad options file stops the follower with one line naming it, before the
// replica is created or opened; so do options under which the replica would
// not mirror the master (another comparator, a compaction that drops data).
TEST_F(SettingsTest, FollowerBadOptionsFileExitsWithOneLineAndTouchesNothing) {
  const std::string replica = dir_ + "/replica";
  WriteDb(replica, NumberedKeys(1));
  const auto before = Files(replica);
  const std::string missing = dir_ + "/missing-replica";
  const std::vector<std::string> files = {
      dir_ + "/missing",
      WriteConfig("garbage", "not an options file\n"),
      WriteConfig("unknown", "[DBOptions]\n  no_such_option=1\n[CFOptions \"default\"]\n"),
      WriteConfig("value", "[DBOptions]\n  max_open_files=many\n[CFOptions \"default\"]\n"),
      WriteConfig("comparator",
                  "[DBOptions]\n[CFOptions \"default\"]\n  comparator=no.such.Comparator\n"),
      WriteConfig("merge",
                  "[DBOptions]\n[CFOptions \"default\"]\n  merge_operator=no.such.Merge\n"),
      WriteConfig("reverse",
                  "[DBOptions]\n[CFOptions \"default\"]\n[CFOptions \"meta\"]\n"
                  "  comparator=rocksdb.ReverseBytewiseComparator\n"),
      WriteConfig("fifo",
                  "[DBOptions]\n[CFOptions \"default\"]\n"
                  "  compaction_style=kCompactionStyleFIFO\n"),
      WriteConfig("unordered", "[DBOptions]\n  unordered_write=true\n[CFOptions \"default\"]\n"),
      WriteConfig("exists", "[DBOptions]\n  error_if_exists=true\n[CFOptions \"default\"]\n")};
  for (const std::string& file : files) {
    for (const std::string& path : {replica, missing}) {
      RunResult r = RunProgram({ProgramPath("sdiff-rocks-follower"), "--db=" + path,
                                "--master=127.0.0.1:1", "--options-file=" + file},
                               kDeadline);
      ASSERT_TRUE(r.code.has_value()) << file;
      EXPECT_EQ(*r.code, 2) << file << ": " << r.err;
      EXPECT_EQ(Lines(r.err), 1u) << file << ": " << r.err;
      EXPECT_NE(r.err.find("--options-file " + file + ": "), std::string::npos) << r.err;
    }
  }
  EXPECT_EQ(Files(replica), before);
  EXPECT_FALSE(std::filesystem::exists(missing));
  EXPECT_FALSE(std::filesystem::exists(missing + ".sdiff-clone"));
}

// --column-families chooses what the master replicates (default: every
// family); a follower then holds those and no other.
TEST_F(SettingsTest, ColumnFamiliesChooseWhatIsReplicated) {
  const std::string db = dir_ + "/master";
  WriteFamilies(db, {"a", "b", "c"});
  uint16_t port = 0;
  auto master = StartMaster(db, {"--column-families=a,c"}, &port);
  ASSERT_NE(port, 0) << master->err();
  auto follower =
      ChildProcess::Start({ProgramPath("sdiff-rocks-follower"), "--db=" + dir_ + "/follower",
                           "--master=127.0.0.1:" + std::to_string(port)});
  ASSERT_TRUE(follower);
  const std::string expected = "a:a-key ==> a-value\nc:c-key ==> c-value\n";
  std::string scanned;
  auto end = std::chrono::steady_clock::now() + kDeadline;
  while (scanned != expected && std::chrono::steady_clock::now() < end) {
    follower->WaitForOutput([](const std::string&, const std::string&) { return false; }, 100ms);
    scanned =
        RunProgram({ProgramPath("sdiff-ldb"), "--db=" + dir_ + "/follower", "scan"}, kDeadline).out;
  }
  EXPECT_EQ(scanned, expected) << follower->err();
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();

  // A name the database does not have, or sdiff's own: one line, untouched.
  const auto before = Files(db);
  for (const char* bad : {"--column-families=a,nope", "--column-families=__sdiff"}) {
    RunResult r = RunProgram(
        {ProgramPath("sdiff-rocks-master"), "--db=" + db, "--listen=127.0.0.1:0", bad}, kDeadline);
    ASSERT_TRUE(r.code.has_value()) << bad;
    EXPECT_EQ(*r.code, 2) << bad;
    EXPECT_EQ(Lines(r.err), 1u) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("--column-families"), std::string::npos) << r.err;
  }
  EXPECT_EQ(Files(db), before);
}

// Whose fault: what the user gave (a flag, a value, a file it names) is
// exit 2, with one line and nothing created; the system failing (a port in
// use) is exit 1. --help says so.
TEST_F(SettingsTest, ExitStatusSaysWhoseFaultItIs) {
  WriteDb(dir_ + "/master", NumberedKeys(1));
  const std::string master = ProgramPath("sdiff-rocks-master");
  const std::string follower = ProgramPath("sdiff-rocks-follower");
  const std::string db = "--db=" + dir_ + "/master";
  const std::string created = "--db=" + dir_ + "/created";  // must stay absent
  const std::string not_pem = WriteConfig("not.pem", "not a certificate\n");
  WriteSecret(dir_ + "/short", "short");
  const std::vector<std::vector<std::string>> bad_input = {
      {master, db, "--listen=nowhere"},
      {master, created},  // missing, without --create-if-missing
      {master, "--db=" + not_pem, "--listen=127.0.0.1:0"},
      {master, db, "--listen=127.0.0.1:0", "--secret-file=" + dir_ + "/none"},
      {master, db, "--listen=127.0.0.1:0", "--secret-file=" + dir_ + "/short"},
      {master, db, "--listen=127.0.0.1:0", "--tls-cert=" + not_pem, "--tls-key=" + not_pem},
      {master, db, "--listen=127.0.0.1:0", "--tls-ca=" + dir_ + "/none"},
      {master, db, "--listen=127.0.0.1:0", "--allow-writers"},
      {master, db, "--listen=127.0.0.1:0", "--metrics=nowhere:port"},
      {follower, created, "--master=nowhere"},
      {follower, created, "--master=127.0.0.1:1", "--tls-ca=" + not_pem},
      {follower, created, "--master=127.0.0.1:1", "--secret-file=" + dir_ + "/none"},
      {follower, "--db=" + not_pem, "--master=127.0.0.1:1"},
      {follower, created, "--master=127.0.0.1:1", "--repair-interval=-1"},
  };
  for (const auto& argv : bad_input) {
    RunResult r = RunProgram(argv, kDeadline);
    std::string what = argv[0].substr(argv[0].rfind('/') + 1) + " " + argv.back();
    ASSERT_TRUE(r.code.has_value()) << what;
    EXPECT_EQ(*r.code, 2) << what << ": " << r.err;
    EXPECT_EQ(Lines(r.err), 1u) << what << ": " << r.err;
    EXPECT_EQ(r.out, "") << what;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/created"));

  // A port another process holds.
  uint16_t port = 0;
  auto holder = StartMaster(dir_ + "/master", {}, &port);
  ASSERT_NE(port, 0) << holder->err();
  WriteDb(dir_ + "/other", NumberedKeys(1));
  RunResult busy = RunProgram(
      {master, "--db=" + dir_ + "/other", "--listen=127.0.0.1:" + std::to_string(port)}, kDeadline);
  ASSERT_TRUE(busy.code.has_value());
  EXPECT_EQ(*busy.code, 1) << busy.err;
  EXPECT_NE(busy.err.find("\nsdiff-rocks-master: I/O error: cannot listen on"), std::string::npos)
      << busy.err;  // after the log lines of its start
  EXPECT_EQ(holder->Stop(SIGTERM, kDeadline), 0) << holder->err();

  for (const std::string& program : {master, follower}) {
    RunResult help = RunProgram({program, "--help"}, kDeadline);
    EXPECT_NE(help.out.find("1 a runtime failure"), std::string::npos) << help.out;
    EXPECT_NE(help.out.find("2 a bad flag, value or file"), std::string::npos) << help.out;
  }
}

}  // namespace
}  // namespace sdiff::testing
