// Failover with the real programs (issue 14, section 2): a stopped follower
// promoted to master (sdiff-rocks-master --promote) serves the others, which
// resume or diff, never copy everything; the old master comes back as its
// follower with a ledger of the writes it loses, and replaying the ledger
// through the new master makes them visible everywhere. Also the ledger file
// itself, and the refusals.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "plugin/ledger.h"
#include "test/support/child_process.h"
#include "test/support/daemon_test.h"
#include "test/support/http_get.h"

namespace sdiff::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

// A ledger's entries, in order: (family, key) -> value, nullopt for "absent".
struct Entry {
  std::string family, key;
  std::optional<std::string> value;
  friend bool operator==(const Entry&, const Entry&) = default;
};

std::vector<Entry> ReadLedger(const std::string& path) {
  std::ifstream in(path);
  std::string line, family = "default";
  std::vector<Entry> out;
  while (std::getline(in, line)) {
    plugin::LedgerLine parsed;
    EXPECT_TRUE(plugin::ParseLedgerLine(line, &parsed).ok()) << line;
    switch (parsed.kind) {
      case plugin::LedgerLine::Kind::kComment:
        break;
      case plugin::LedgerLine::Kind::kFamily:
        family = parsed.family;
        break;
      case plugin::LedgerLine::Kind::kPut:
        out.push_back({family, parsed.key, parsed.value});
        break;
      case plugin::LedgerLine::Kind::kDelete:
        out.push_back({family, parsed.key, std::nullopt});
        break;
    }
  }
  return out;
}

std::vector<std::string> Families(const std::string& path) {
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok()) << path;
  return names;
}

TEST(LedgerTest, AppendsHexLinesThatParseBack) {
  char tmpl[] = "/tmp/sdiff-ledger-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/ledger";
  {
    std::unique_ptr<plugin::Ledger> ledger;
    ASSERT_TRUE(plugin::Ledger::Open(path, &ledger).ok());
    ASSERT_TRUE(ledger
                    ->Append({{"default", "k\t1", std::string("v\n1")},
                              {"default", std::string("\0k", 2), std::nullopt},
                              {"other", "k", std::string()}})
                    .ok());
    EXPECT_EQ(ledger->appended(), 3u);
  }
  {
    // Appending again: the header is not repeated, the family is restated.
    std::unique_ptr<plugin::Ledger> ledger;
    ASSERT_TRUE(plugin::Ledger::Open(path, &ledger).ok());
    ASSERT_TRUE(ledger->Append({{"other", "z", std::string("1")}}).ok());
  }
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text,
            "# sdiff ledger v1\n"
            "# family 0x64656661756C74\n"
            "0x6B0931\t0x760A31\n"
            "0x006B\t-\n"
            "# family 0x6F74686572\n"
            "0x6B\t0x\n"
            "# family 0x6F74686572\n"
            "0x7A\t0x31\n");
  EXPECT_EQ(ReadLedger(path), (std::vector<Entry>{{"default", "k\t1", "v\n1"},
                                                  {"default", std::string("\0k", 2), std::nullopt},
                                                  {"other", "k", ""},
                                                  {"other", "z", "1"}}));

  // A file that is not a ledger is refused, and left as it was.
  const std::string other = std::string(tmpl) + "/notes.txt";
  std::ofstream(other) << "my notes\n";
  std::unique_ptr<plugin::Ledger> ledger;
  Status s = plugin::Ledger::Open(other, &ledger);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("not an sdiff ledger"), std::string::npos) << s.ToString();
  EXPECT_EQ(std::filesystem::file_size(other), 9u);
  plugin::LedgerLine line;
  EXPECT_TRUE(plugin::ParseLedgerLine("0x6B\tnot-hex", &line).IsInvalidArgument());
  EXPECT_TRUE(plugin::ParseLedgerLine("0x6B", &line).IsInvalidArgument());
  std::filesystem::remove_all(tmpl);
}

class PromotionTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    secret_ = dir_ + "/secret";
    WriteSecret(secret_, "a shared secret of more than sixteen bytes");
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  RunResult Ldb(std::vector<std::string> args) {
    args.insert(args.begin(), ProgramPath("sdiff-ldb"));
    return RunProgram(args, kDeadline);
  }

  // A master taking writes through it; *port is where it listens.
  std::unique_ptr<ChildProcess> Master(const std::string& db, std::vector<std::string> extra,
                                       uint16_t* port) {
    extra.push_back("--allow-writers");
    extra.push_back("--secret-file=" + secret_);
    auto master = StartMaster(db, extra, port);
    EXPECT_NE(*port, 0) << master->err();
    return master;
  }

  std::vector<std::string> FollowerArgs(const std::string& db, uint16_t port) {
    return {ProgramPath("sdiff-rocks-follower"), "--db=" + db,
            "--master=127.0.0.1:" + std::to_string(port), "--secret-file=" + secret_, "--no-clone"};
  }
  std::unique_ptr<ChildProcess> Follow(const std::string& db, uint16_t port,
                                       const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = FollowerArgs(db, port);
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto follower = ChildProcess::Start(argv);
    // Its directory exists once it prints where it follows into.
    EXPECT_TRUE(follower->WaitForOutput(
        [](const std::string& out, const std::string&) {
          return out.find("following ") != std::string::npos;
        },
        kDeadline))
        << follower->err();
    return follower;
  }

  // Writes through the master on `port`; returns the sequence it committed at.
  uint64_t Write(uint16_t port, const std::vector<std::string>& command) {
    std::vector<std::string> args = {"--master=127.0.0.1:" + std::to_string(port),
                                     "--secret-file=" + secret_};
    args.insert(args.end(), command.begin(), command.end());
    args.insert(args.begin() + 3, "--print-seq");  // after the subcommand
    RunResult r = Ldb(args);
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.out.rfind("seq ", 0) != 0) return 0;
    return std::stoull(r.out.substr(4));
  }

  // Waits until the live replica `db` holds master sequence `seq`, then
  // returns `key` there ("" if absent).
  std::string GetWhenApplied(const std::string& db, const std::string& key, uint64_t seq) {
    RunResult r =
        Ldb({"--db=" + db, "get", key, "--min-seq=" + std::to_string(seq), "--wait-ms=20000"});
    EXPECT_TRUE(r.code == 0 || r.code == 1) << r.err;
    return r.code == 0 ? r.out : "";
  }

  static bool Logged(ChildProcess& p, const std::string& line) {
    return p.WaitForOutput(
        [&](const std::string&, const std::string& err) {
          return err.find(line) != std::string::npos;
        },
        kDeadline);
  }

  std::string secret_;
};

TEST_F(PromotionTest, PromotedFollowerServesAndTheOldMasterComesBackWithALedger) {
  const std::string a = Path("a"), b = Path("b"), c = Path("c"), d = Path("d");
  const std::string ledger = Path("a.ledger");
  WriteDb(a, NumberedKeys(20));
  uint16_t port_a = 0;
  auto master_a = Master(a, {}, &port_a);
  ASSERT_NE(port_a, 0);

  // B and C follow A and stop at the same point.
  auto follower_b = Follow(b, port_a);
  auto follower_c = Follow(c, port_a);
  uint64_t s = Write(port_a, {"put", "x", "1"});
  ASSERT_GT(s, 0u);
  EXPECT_EQ(GetWhenApplied(b, "x", s), "1\n");
  EXPECT_EQ(GetWhenApplied(c, "x", s), "1\n");
  EXPECT_EQ(follower_b->Stop(SIGTERM, kDeadline), 0) << follower_b->err();
  EXPECT_EQ(follower_c->Stop(SIGTERM, kDeadline), 0) << follower_c->err();

  // A takes writes B never gets: a change, a new key, a delete. D follows A
  // through them, so it stops past the point B was promoted at.
  Write(port_a, {"put", "x", "2"});
  Write(port_a, {"put", "lost", "1"});
  uint64_t s2 = Write(port_a, {"delete", "key3"});
  auto follower_d = Follow(d, port_a);
  EXPECT_EQ(GetWhenApplied(d, "lost", s2), "1\n");
  EXPECT_EQ(follower_d->Stop(SIGTERM, kDeadline), 0) << follower_d->err();
  EXPECT_EQ(master_a->Stop(SIGTERM, kDeadline), 0) << master_a->err();
  const Contents on_a = ReadSecondary(a);

  // B becomes the master, under a new identity whose lineage says where
  // A's history stands in its own.
  uint16_t port_b = 0;
  auto master_b = Master(b, {"--promote", "--metrics=127.0.0.1:0"}, &port_b);
  ASSERT_NE(port_b, 0);
  EXPECT_TRUE(Logged(*master_b, "lineage:")) << master_b->err();
  ASSERT_TRUE(master_b->WaitForOutput(
      [](const std::string& out, const std::string&) {
        size_t at = out.find("metrics on port ");
        return at != std::string::npos && out.find('\n', at) != std::string::npos;
      },
      kDeadline));
  auto metrics_port = static_cast<uint16_t>(
      std::stoi(master_b->out().substr(master_b->out().find("metrics on port ") + 16)));
  HttpResponse page = HttpGet(metrics_port, "/status", kDeadline);
  ASSERT_EQ(page.status, 200) << page.error;
  auto status = nlohmann::json::parse(page.body);
  ASSERT_TRUE(status["lineage"].is_array()) << page.body;
  ASSERT_EQ(status["lineage"].size(), 1u) << page.body;
  EXPECT_EQ(status["lineage"][0]["master_seq"], s) << page.body;
  EXPECT_EQ(status["lineage"][0]["seq"], status["sequences"]["master"]) << page.body;
  EXPECT_NE(status["lineage"][0]["master_id"], status["master_id"]) << page.body;

  // C stopped where B did: it resumes on B. D holds writes B lacks: it diffs.
  auto follower_c2 = Follow(c, port_b);
  EXPECT_TRUE(Logged(*follower_c2, "resuming the stream")) << follower_c2->err();
  auto follower_d2 = Follow(d, port_b);
  EXPECT_TRUE(Logged(*follower_d2, ": diffing")) << follower_d2->err();
  EXPECT_TRUE(Logged(*follower_d2, "diff with master repaired")) << follower_d2->err();
  EXPECT_TRUE(Logged(*follower_c2, "diff with master repaired 0 keys")) << follower_c2->err();

  // A, restarted as B's follower, refuses without a ledger and touches nothing.
  RunResult refused = RunProgram(FollowerArgs(a, port_b), kDeadline);
  EXPECT_EQ(refused.code, 2) << refused.err;
  EXPECT_EQ(Lines(refused.err), 1u) << refused.err;
  EXPECT_NE(refused.err.find("holds data but no follower state"), std::string::npos) << refused.err;
  EXPECT_EQ(ReadSecondary(a), on_a);

  // With a ledger it becomes equal to B (by a diff: it holds data), and the
  // ledger holds A's lost writes.
  auto follower_a = Follow(a, port_b, {"--ledger=" + ledger});
  EXPECT_TRUE(Logged(*follower_a, ": diffing")) << follower_a->err();
  EXPECT_TRUE(Logged(*follower_a, "is a replica of")) << follower_a->err();
  const Contents on_b = ReadSecondary(b);
  EXPECT_EQ(on_b.count("lost"), 0u);
  EXPECT_EQ(on_b.at("x"), "1");
  EXPECT_EQ(ReadSecondary(a), on_b);
  std::vector<Entry> entries = ReadLedger(ledger);
  std::sort(entries.begin(), entries.end(),
            [](const Entry& x, const Entry& y) { return x.key < y.key; });
  EXPECT_EQ(entries, (std::vector<Entry>{{"default", "key3", std::nullopt},
                                         {"default", "lost", "1"},
                                         {"default", "x", "2"}}));
  EXPECT_EQ(ReadSecondary(c), on_b);
  EXPECT_EQ(ReadSecondary(d), on_b);

  // Replaying the ledger through B makes A's lost writes visible everywhere.
  RunResult load = Ldb({"--master=127.0.0.1:" + std::to_string(port_b), "--secret-file=" + secret_,
                        "load", "--print-seq", ledger});
  ASSERT_EQ(load.code, 0) << load.err;
  ASSERT_EQ(load.out.rfind("seq ", 0), 0u) << load.out;
  uint64_t replayed = std::stoull(load.out.substr(4));
  for (const std::string& replica : {a, c, d}) {
    EXPECT_EQ(GetWhenApplied(replica, "lost", replayed), "1\n") << replica;
    EXPECT_EQ(GetWhenApplied(replica, "x", replayed), "2\n") << replica;
    EXPECT_EQ(GetWhenApplied(replica, "key3", replayed), "") << replica;
  }
  EXPECT_EQ(ReadSecondary(b), on_a);
  EXPECT_EQ(ReadSecondary(a), on_a);

  for (auto* p : {follower_a.get(), follower_c2.get(), follower_d2.get(), master_b.get()}) {
    EXPECT_EQ(p->Stop(SIGTERM, kDeadline), 0) << p->err();
  }
  // B is a master now: --promote again is refused.
  RunResult again =
      RunProgram({ProgramPath("sdiff-rocks-master"), "--db=" + b, "--promote"}, kDeadline);
  EXPECT_EQ(again.code, 2) << again.err;
  EXPECT_EQ(Lines(again.err), 1u) << again.err;
  EXPECT_NE(again.err.find("is a master's already"), std::string::npos) << again.err;
}

TEST_F(PromotionTest, RefusalsAreOneLineAndTouchNothing) {
  const std::string plain = Path("plain");
  WriteDb(plain, NumberedKeys(3));
  const std::vector<std::string> families = Families(plain);

  // A plain RocksDB is not a follower's: no replica of it without a ledger
  // or --discard, and no promotion. The master address is never dialled.
  RunResult r = RunProgram(FollowerArgs(plain, 1), kDeadline);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("--ledger=FILE"), std::string::npos) << r.err;
  r = RunProgram({ProgramPath("sdiff-rocks-master"), "--db=" + plain, "--promote"}, kDeadline);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("not a follower's directory"), std::string::npos) << r.err;
  std::vector<std::string> args = FollowerArgs(plain, 1);
  args.push_back("--ledger=" + Path("ledger"));
  args.push_back("--discard");
  r = RunProgram(args, kDeadline);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_EQ(ReadSecondary(plain), NumberedKeys(3));
  EXPECT_EQ(Families(plain), families) << "no __sdiff family was added";

  // With --discard it follows, and the master's data replaces its own.
  const std::string m = Path("m");
  WriteDb(m, {{"only-on-master", "1"}});
  uint16_t port = 0;
  auto master = Master(m, {}, &port);
  ASSERT_NE(port, 0);
  auto follower = Follow(plain, port, {"--discard"});
  EXPECT_TRUE(Logged(*follower, "is a replica of")) << follower->err();
  EXPECT_EQ(ReadSecondary(plain), (Contents{{"only-on-master", "1"}}));
  EXPECT_EQ(follower->Stop(SIGTERM, kDeadline), 0) << follower->err();

  // A follower's directory is not served as a master's without --promote.
  r = RunProgram({ProgramPath("sdiff-rocks-master"), "--db=" + plain}, kDeadline);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("--promote"), std::string::npos) << r.err;
  EXPECT_EQ(master->Stop(SIGTERM, kDeadline), 0) << master->err();
}

}  // namespace
}  // namespace sdiff::testing
