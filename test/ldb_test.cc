// sdiff-ldb: the commands called directly (put/get/delete/scan, roots tagged by
// family name, diffs across families, hex), then the real binary spawned for
// its exit statuses and one-line errors. Real RocksDB in temporary directories.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test/support/child_process.h"
#include "tools/ldb_commands.h"

namespace sdiff::tools {
namespace {

using namespace std::chrono_literals;
// family -> key -> value
using Contents = std::map<std::string, std::map<std::string, std::string>>;

constexpr auto kDeadline = 30s;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sdiff-ldb-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Creates a database holding `contents`; its families are created in the
// order given by `family_order` (then any others), which fixes their IDs.
void MakeDb(const std::string& path, const Contents& contents,
            const std::vector<std::string>& family_order = {}) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::vector<std::string> order = family_order;
  for (const auto& [family, entries] : contents) {
    if (std::find(order.begin(), order.end(), family) == order.end()) order.push_back(family);
  }
  std::map<std::string, rocksdb::ColumnFamilyHandle*> handles;
  for (const std::string& family : order) {
    if (family == rocksdb::kDefaultColumnFamilyName) continue;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), family, &handle).ok());
    handles[family] = handle;
  }
  handles[rocksdb::kDefaultColumnFamilyName] = db->DefaultColumnFamily();
  for (const auto& [family, entries] : contents) {
    for (const auto& [key, value] : entries) {
      ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[family], key, value).ok());
    }
  }
  for (auto& [family, handle] : handles) {
    if (family != rocksdb::kDefaultColumnFamilyName) db->DestroyColumnFamilyHandle(handle);
  }
  ASSERT_TRUE(db->Close().ok());
}

std::unique_ptr<LdbDb> OpenDb(const std::string& path, LdbDb::Mode mode) {
  std::unique_ptr<LdbDb> db;
  Status s = LdbDb::Open(path, mode, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return db;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

struct Output {
  int status = -1;
  std::string out;
  std::string err;
};

Output RunInProcess(const LdbRequest& request) {
  std::ostringstream out, err;
  Output result;
  result.status = RunLdb(request, out, err);
  result.out = out.str();
  result.err = err.str();
  return result;
}

// Runs the request in process; succeeds if it exits with `status` and prints `out`.
::testing::AssertionResult Prints(const LdbRequest& request, int status, const std::string& out) {
  Output o = RunInProcess(request);
  if (o.status == status && o.out == out) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "exit " << o.status << ", stdout \"" << o.out << "\", stderr \"" << o.err << "\"";
}

LdbRequest Request(LdbCommand command, const std::string& db) {
  LdbRequest r;
  r.command = command;
  r.db = db;
  return r;
}

TEST(LdbFormat, EscapesHexAndDiffLines) {
  EXPECT_EQ(Escape(std::string("a b\0\n\\\xff", 7)), "a b\\x00\\x0a\\x5c\\xff");
  EXPECT_EQ(ToHex(std::string("\x00\xab\x10", 3)), "0x00AB10");
  EXPECT_EQ(ToHex(""), "0x");
  std::string bytes;
  ASSERT_TRUE(FromHex("0x00ab10", &bytes).ok());
  EXPECT_EQ(bytes, std::string("\x00\xab\x10", 3));
  ASSERT_TRUE(FromHex("6B6579", &bytes).ok());
  EXPECT_EQ(bytes, "key");
  ASSERT_TRUE(FromHex("0x", &bytes).ok());
  EXPECT_EQ(bytes, "");
  EXPECT_TRUE(FromHex("0xabc", &bytes).IsInvalidArgument());
  EXPECT_TRUE(FromHex("zz", &bytes).IsInvalidArgument());

  EXPECT_EQ(FormatDiffLine({"default", "k", DiffKind::kOnlyInB}, false), "+ k");
  EXPECT_EQ(FormatDiffLine({"default", "k", DiffKind::kOnlyInA}, false), "- k");
  EXPECT_EQ(FormatDiffLine({"other", "k\x01", DiffKind::kValueDiffers}, false), "~ other:k\\x01");
  EXPECT_EQ(FormatDiffLine({"other", "k", DiffKind::kValueDiffers}, true), "~ other:0x6B");
}

TEST(LdbFormat, TagsAreIndicesOfSortedDistinctNames) {
  std::map<std::string, FamilyTag> tags;
  ASSERT_TRUE(TagsByName({"zeta", "default", "alpha", "default"}, &tags).ok());
  EXPECT_EQ(tags, (std::map<std::string, FamilyTag>{{"alpha", 0}, {"default", 1}, {"zeta", 2}}));
}

class LdbTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(LdbTest, PutGetDeleteScan) {
  std::string path = dir_.sub("db");
  MakeDb(path, {{"default", {}}, {"other", {}}});
  {
    std::unique_ptr<LdbDb> db = OpenDb(path, LdbDb::Mode::kReadWrite);
    ASSERT_TRUE(db);
    EXPECT_EQ(db->DataFamilies(), (std::vector<std::string>{"default", "other"}));
    ASSERT_TRUE(db->Put("default", "k1", "v1").ok());
    ASSERT_TRUE(db->Put("default", "k2", "v2").ok());
    ASSERT_TRUE(db->Put("other", "k1", "o1").ok());
    std::string value;
    ASSERT_TRUE(db->Get("other", "k1", &value).ok());
    EXPECT_EQ(value, "o1");
    ASSERT_TRUE(db->Delete("default", "k2").ok());
    EXPECT_TRUE(db->Get("default", "k2", &value).IsNotFound());
    EXPECT_TRUE(db->Put("missing", "k", "v").IsInvalidArgument());

    std::vector<std::string> seen;
    ASSERT_TRUE(db->Scan("default", [&](std::string_view k, std::string_view v) {
                    seen.push_back(std::string(k) + "=" + std::string(v));
                    return Status::OK();
                  }).ok());
    EXPECT_EQ(seen, std::vector<std::string>{"k1=v1"});
  }

  // The same through the commands, as the tool prints them.
  LdbRequest put = Request(LdbCommand::kPut, path);
  put.key = "k3";
  put.value = "line\nbreak";
  EXPECT_TRUE(Prints(put, kExitOk, "OK\n"));

  LdbRequest get = Request(LdbCommand::kGet, path);
  get.key = "k3";
  EXPECT_TRUE(Prints(get, kExitOk, "line\nbreak\n"));  // as stored, like ldb
  EXPECT_TRUE(Prints(Request(LdbCommand::kScan, path), kExitOk,
                     "k1 ==> v1\nk3 ==> line\\x0abreak\nother:k1 ==> o1\n"));

  LdbRequest scan_other = Request(LdbCommand::kScan, path);
  scan_other.column_family = "other";
  EXPECT_TRUE(Prints(scan_other, kExitOk, "other:k1 ==> o1\n"));

  LdbRequest del = Request(LdbCommand::kDelete, path);
  del.key = "k3";
  EXPECT_TRUE(Prints(del, kExitOk, "OK\n"));
  Output o = RunInProcess(get);
  EXPECT_EQ(o.status, kExitDifferent);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, "sdiff-ldb: not found: k3\n");

  scan_other.column_family = "nope";
  o = RunInProcess(scan_other);
  EXPECT_EQ(o.status, kExitError);
  EXPECT_EQ(Lines(o.err).size(), 1u);
  EXPECT_NE(o.err.find("nope"), std::string::npos) << o.err;
}

TEST_F(LdbTest, HexInAndOut) {
  std::string path = dir_.sub("db");
  MakeDb(path, {{"default", {}}});
  LdbRequest put = Request(LdbCommand::kPut, path);
  put.key_hex = put.value_hex = true;
  put.key = "0x00FF";
  put.value = "0a0b";
  ASSERT_EQ(RunInProcess(put).status, kExitOk);

  LdbRequest get = Request(LdbCommand::kGet, path);
  get.key_hex = get.value_hex = true;
  get.key = "0x00ff";
  EXPECT_TRUE(Prints(get, kExitOk, "0x0A0B\n"));

  LdbRequest scan = Request(LdbCommand::kScan, path);
  EXPECT_EQ(RunInProcess(scan).out, "\\x00\\xff ==> \\x0a\\x0b\n");
  scan.key_hex = true;
  EXPECT_EQ(RunInProcess(scan).out, "0x00FF ==> \\x0a\\x0b\n");
  scan.value_hex = true;
  EXPECT_EQ(RunInProcess(scan).out, "0x00FF ==> 0x0A0B\n");

  put.key = "0xF";
  Output o = RunInProcess(put);
  EXPECT_EQ(o.status, kExitError);
  EXPECT_EQ(Lines(o.err).size(), 1u);
  EXPECT_NE(o.err.find("bad hex input '0xF'"), std::string::npos) << o.err;
  put.key = "00";
  put.value = "0xgg";
  o = RunInProcess(put);
  EXPECT_EQ(o.status, kExitError);
  EXPECT_NE(o.err.find("bad hex input '0xgg'"), std::string::npos) << o.err;
}

// A follower's families may have other IDs than its master's, and it keeps
// its own state in __sdiff: neither may change the root.
TEST_F(LdbTest, RootTagsFamiliesByNameAndSkipsFollowerState) {
  Contents data = {{"default", {{"a", "1"}, {"b", "2"}}}, {"x", {{"a", "1"}}}, {"y", {{"c", "3"}}}};
  MakeDb(dir_.sub("master"), data, {"x", "y"});
  Contents follower = data;
  follower["__sdiff"] = {{"state", "whatever"}};
  MakeDb(dir_.sub("follower"), follower, {"__sdiff", "y", "x"});

  std::unique_ptr<LdbDb> master_db = OpenDb(dir_.sub("master"), LdbDb::Mode::kReadOnly);
  std::unique_ptr<LdbDb> follower_db = OpenDb(dir_.sub("follower"), LdbDb::Mode::kReadOnly);
  ASSERT_TRUE(master_db && follower_db);
  RootInfo master_root, follower_root;
  ASSERT_TRUE(Root(*master_db, {}, &master_root).ok());
  ASSERT_TRUE(Root(*follower_db, {}, &follower_root).ok());
  EXPECT_EQ(master_root.keys, 4u);
  EXPECT_EQ(follower_root.keys, 4u);
  EXPECT_EQ(master_root.root, follower_root.root);
  EXPECT_FALSE(master_root.root.is_zero());

  // One family keeps its tag: "x" holds the same entry as "default", and
  // each hashes with its own tag.
  RootInfo only_x, only_default;
  ASSERT_TRUE(Root(*master_db, "x", &only_x).ok());
  ASSERT_TRUE(Root(*follower_db, "default", &only_default).ok());
  EXPECT_EQ(only_x.keys, 1u);
  EXPECT_EQ(only_default.keys, 2u);
  EXPECT_EQ(only_x.root ^ only_default.root ^ master_root.root,
            LeafHash(KeyHash(2, "c"), "3"));  // y: tag 2

  Output o = RunInProcess(Request(LdbCommand::kRoot, dir_.sub("follower")));
  EXPECT_EQ(o.status, kExitOk) << o.err;
  EXPECT_EQ(o.out, "root " + master_root.root.ToHex() + " keys 4\n");

  LdbRequest meta = Request(LdbCommand::kRoot, dir_.sub("follower"));
  meta.column_family = "__sdiff";
  o = RunInProcess(meta);
  EXPECT_EQ(o.status, kExitError);
  EXPECT_EQ(Lines(o.err).size(), 1u);
}

TEST_F(LdbTest, DiffReportsEachKindAcrossFamilies) {
  MakeDb(dir_.sub("a"), {{"default", {{"same", "s"}, {"changed", "1"}, {"a-only", "x"}}},
                         {"other", {{"o", "1"}, {"gone", "g"}}}});
  MakeDb(dir_.sub("b"),
         {{"default", {{"same", "s"}, {"changed", "2"}, {"b-only", "y"}}},
          {"other", {{"o", "2"}, {"new\x01", "n"}}},
          {"__sdiff", {{"state", "ignored"}}},
          {"extra", {{"e", "1"}}}},
         {"extra", "__sdiff", "other"});
  std::unique_ptr<LdbDb> a = OpenDb(dir_.sub("a"), LdbDb::Mode::kReadOnly);
  std::unique_ptr<LdbDb> b = OpenDb(dir_.sub("b"), LdbDb::Mode::kReadOnly);
  ASSERT_TRUE(a && b);
  std::vector<DiffLine> lines;
  ASSERT_TRUE(DiffDatabases(*a, *b, {}, &lines).ok());
  std::vector<DiffLine> expected = {
      {"default", "a-only", DiffKind::kOnlyInA},       {"default", "b-only", DiffKind::kOnlyInB},
      {"default", "changed", DiffKind::kValueDiffers}, {"extra", "e", DiffKind::kOnlyInB},
      {"other", "gone", DiffKind::kOnlyInA},           {"other", "new\x01", DiffKind::kOnlyInB},
      {"other", "o", DiffKind::kValueDiffers},
  };
  EXPECT_EQ(lines, expected);

  LdbRequest diff = Request(LdbCommand::kDiff, dir_.sub("a"));
  diff.db2 = dir_.sub("b");
  Output o = RunInProcess(diff);
  EXPECT_EQ(o.status, kExitDifferent);
  EXPECT_EQ(o.out,
            "- a-only\n+ b-only\n~ changed\n+ extra:e\n- other:gone\n+ other:new\\x01\n"
            "~ other:o\n");
  EXPECT_EQ(o.err, "7 differences: 2 only in " + dir_.sub("a") + ", 3 only in " + dir_.sub("b") +
                       ", 2 changed\n");

  diff.column_family = "other";
  diff.key_hex = true;
  o = RunInProcess(diff);
  EXPECT_EQ(o.status, kExitDifferent);
  EXPECT_EQ(o.out, "- other:0x676F6E65\n+ other:0x6E657701\n~ other:0x6F\n");
}

TEST_F(LdbTest, IdenticalDatabasesDiffToNothing) {
  Contents data = {{"default", {{"k", "v"}}}, {"f", {{"k", "w"}}}};
  MakeDb(dir_.sub("a"), data, {"f"});
  data["__sdiff"] = {{"state", "1"}};
  MakeDb(dir_.sub("b"), data, {"__sdiff", "f"});
  LdbRequest diff = Request(LdbCommand::kDiff, dir_.sub("a"));
  diff.db2 = dir_.sub("b");
  Output o = RunInProcess(diff);
  EXPECT_EQ(o.status, kExitOk) << o.err;
  EXPECT_EQ(o.out, "");
  EXPECT_NE(o.err.find("0 differences"), std::string::npos) << o.err;
}

// The binary itself, run to completion with stdout and stderr captured.
sdiff::testing::RunResult RunBinary(std::vector<std::string> args) {
  args.insert(args.begin(), sdiff::testing::ProgramPath("sdiff-ldb"));
  return sdiff::testing::RunProgram(std::move(args), kDeadline);
}

class LdbBinaryTest : public LdbTest {};

TEST_F(LdbBinaryTest, BadFlagsAreOneLineAndExitTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--db=" + dir_.sub("db"), "--nope", "scan"},
           {"--db=" + dir_.sub("db")},              // no command
           {"scan"},                                // no --db
           {"--db=" + dir_.sub("db"), "put", "k"},  // no value
           {"--db=" + dir_.sub("db"), "diff"},      // no --db2
       }) {
    auto r = RunBinary(args);
    EXPECT_EQ(r.code, kExitError) << args.back();
    EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("sdiff-ldb: ", 0), 0u) << r.err;
    EXPECT_EQ(r.out, "");
  }
  auto help = RunBinary({"--help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.out.find("sorted"), std::string::npos) << help.out;  // the tag rule
}

TEST_F(LdbBinaryTest, MissingOrForeignDirectoryNamesThePath) {
  std::string missing = dir_.sub("missing");
  auto r = RunBinary({"--db=" + missing, "put", "k", "v"});
  EXPECT_EQ(r.code, kExitError);
  ASSERT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(missing));  // never created

  r = RunBinary({"--db=" + missing, "get", "k"});
  EXPECT_EQ(r.code, kExitError);  // not 1: no database is not "no such key"
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;

  std::string empty = dir_.sub("empty");
  std::filesystem::create_directory(empty);
  r = RunBinary({"--db=" + empty, "scan"});
  EXPECT_EQ(r.code, kExitError);
  ASSERT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find(empty + " is not a RocksDB database"), std::string::npos) << r.err;
}

TEST_F(LdbBinaryTest, LockedDatabaseRefusesWritesButReads) {
  std::string path = dir_.sub("db");
  MakeDb(path, {{"default", {}}});
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, &raw).ok());
  std::unique_ptr<rocksdb::DB> holder(raw);
  ASSERT_TRUE(holder->Put(rocksdb::WriteOptions(), "k", "held").ok());

  auto r = RunBinary({"--db=" + path, "put", "k", "v"});
  EXPECT_EQ(r.code, kExitError);
  ASSERT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("database " + path + " is in use by another process"), std::string::npos)
      << r.err;

  r = RunBinary({"--db=" + path, "get", "k"});  // read-only: takes no lock
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "held\n");
  holder.reset();
}

TEST_F(LdbBinaryTest, DiffExitsZeroWhenIdenticalOneWhenNot) {
  MakeDb(dir_.sub("a"), {{"default", {{"k", "v"}, {"old", "1"}}}, {"f", {{"x", "1"}}}});
  MakeDb(dir_.sub("b"), {{"default", {{"k", "v"}, {"new", "1"}}}, {"f", {{"x", "2"}}}});
  MakeDb(dir_.sub("a2"), {{"default", {{"k", "v"}, {"old", "1"}}}, {"f", {{"x", "1"}}}});

  auto same = RunBinary({"--db=" + dir_.sub("a"), "diff", "--db2=" + dir_.sub("a2")});
  EXPECT_EQ(same.code, kExitOk) << same.err;
  EXPECT_EQ(same.out, "");

  auto differ = RunBinary({"--db=" + dir_.sub("a"), "diff", "--db2=" + dir_.sub("b")});
  EXPECT_EQ(differ.code, kExitDifferent) << differ.err;
  EXPECT_EQ(differ.out, "+ new\n- old\n~ f:x\n");
  EXPECT_EQ(Lines(differ.err).size(), 1u) << differ.err;

  // Global flags may follow the command, as with ldb.
  auto hex = RunBinary({"diff", "--db=" + dir_.sub("a"), "--db2=" + dir_.sub("b"), "--hex"});
  EXPECT_EQ(hex.code, kExitDifferent) << hex.err;
  EXPECT_EQ(hex.out, "+ 0x6E6577\n- 0x6F6C64\n~ f:0x78\n");
}

}  // namespace
}  // namespace sdiff::tools
