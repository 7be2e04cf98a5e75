// The settings of the programs people run, spawned as processes: --config
// files (and the examples under deploy/config), log levels and JSON logs,
// and their one-line errors.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
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

class SettingsTest : public DaemonTest {
 protected:
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
    if (std::string(level) == "off") EXPECT_EQ(err, "");
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

}  // namespace
}  // namespace sdiff::testing
