// sdiff-ldb's commands over RocksDB: opening without creating, the single-key
// commands, scan, and the merkle root and diff with families tagged by name.
#include "tools/ldb_commands.h"

#include <fmt/format.h>
#include <fmt/ostream.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdarg>
#include <filesystem>
#include <limits>
#include <system_error>
#include <tuple>
#include <utility>

#include "plugin/follower_store.h"
#include "plugin/ledger.h"
#include "plugin/rocks_status.h"
#include "plugin/tree_scan.h"
#include "sdiff/replica_reader.h"
#include "tools/rocks_options.h"

namespace sdiff::tools {
namespace {

using plugin::FromRocks;
using plugin::IsLockHeld;
using plugin::kMetaFamily;
using plugin::ScanIntoTree;
using plugin::TaggedFamilies;
using plugin::TreeScanOptions;

// Read-only opens must not rotate the info LOG of a database another process
// may be running: RocksDB would rename its LOG to LOG.old.* at every open.
class SilentLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char* /*format*/, va_list /*ap*/) override {}
};

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view ToView(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

Status NoFamily(std::string_view family, std::string_view where) {
  return Status::InvalidArgument(fmt::format("no column family '{}' in {}", Escape(family), where));
}

Status RejectMetaFamily() {
  return Status::InvalidArgument(fmt::format(
      "the '{}' column family holds follower state and is never part of a tree", kMetaFamily));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string FormatBytes(std::string_view bytes, bool hex) {
  return hex ? ToHex(bytes) : Escape(bytes);
}

std::string FamilyPrefix(std::string_view family) {
  return family == rocksdb::kDefaultColumnFamilyName ? std::string() : Escape(family) + ":";
}

int RunScan(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  std::unique_ptr<LdbDb> db;
  Status s = LdbDb::Open(r.db, LdbDb::Mode::kReadOnly, &db, r.options_file);
  if (!s.ok()) return ReportError(err, s.message());
  std::vector<std::string> families;
  if (r.column_family) {
    if (!db->HasFamily(*r.column_family)) {
      return ReportError(err, NoFamily(*r.column_family, r.db).message());
    }
    families = {*r.column_family};
  } else {
    families = db->DataFamilies();
  }
  for (const std::string& family : families) {
    std::string prefix = FamilyPrefix(family);
    s = db->Scan(family, [&](std::string_view key, std::string_view value) {
      fmt::print(out, "{}{} ==> {}\n", prefix, FormatBytes(key, r.key_hex),
                 FormatBytes(value, r.value_hex));
      return Status::OK();
    });
    if (!s.ok()) return ReportError(err, s.message());
  }
  return kExitOk;
}

int RunDiff(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  if (r.db2.empty()) return ReportError(err, "diff needs --db2, the database to compare with");
  std::unique_ptr<LdbDb> a, b;
  Status s = LdbDb::Open(r.db, LdbDb::Mode::kReadOnly, &a, r.options_file);
  if (s.ok()) s = LdbDb::Open(r.db2, LdbDb::Mode::kReadOnly, &b, r.options_file);
  std::vector<DiffLine> lines;
  if (s.ok()) s = DiffDatabases(*a, *b, r.column_family, &lines);
  if (!s.ok()) return ReportError(err, s.message());
  size_t only_a = 0, only_b = 0, changed = 0;
  for (const DiffLine& line : lines) {
    fmt::print(out, "{}\n", FormatDiffLine(line, r.key_hex));
    switch (line.kind) {
      case DiffKind::kOnlyInA:
        ++only_a;
        break;
      case DiffKind::kOnlyInB:
        ++only_b;
        break;
      case DiffKind::kValueDiffers:
        ++changed;
        break;
    }
  }
  fmt::print(err, "{} differences: {} only in {}, {} only in {}, {} changed\n", lines.size(),
             only_a, r.db, only_b, r.db2, changed);
  return lines.empty() ? kExitOk : kExitDifferent;
}

}  // namespace

// Checks the path before RocksDB does, so each way it can be wrong gets a
// one-line message naming it.
Status LdbDb::Open(const std::string& path, Mode mode, std::unique_ptr<LdbDb>* out,
                   const std::string& options_file) {
  namespace fs = std::filesystem;
  if (path.empty()) return Status::InvalidArgument("no database given (--db)");
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (st.type() == fs::file_type::not_found) {
    return Status::NotFound(fmt::format("no database at {}: no such directory", path));
  }
  if (ec) return Status::IOError(fmt::format("cannot read {}: {}", path, ec.message()));
  if (!fs::is_directory(st)) {
    return Status::InvalidArgument(
        fmt::format("{} is not a RocksDB database: not a directory", path));
  }
  if (!fs::exists(fs::path(path) / "CURRENT", ec)) {
    return Status::InvalidArgument(
        fmt::format("{} is not a RocksDB database: it has no CURRENT file", path));
  }

  RocksOptions rocks;
  Status loaded = LoadRocksOptions(options_file, &rocks);
  if (!loaded.ok()) return loaded;
  rocksdb::DBOptions options = rocks.db;
  options.create_if_missing = false;
  options.create_missing_column_families = false;
  if (mode == Mode::kReadOnly) options.info_log = std::make_shared<SilentLogger>();
  std::vector<std::string> names;
  rocksdb::Status rs = rocksdb::DB::ListColumnFamilies(options, path, &names);
  if (!rs.ok()) return FromRocks(rs, "cannot list the column families of " + path);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, rocks.ForFamily(name));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  if (mode == Mode::kReadOnly) {
    rs = rocksdb::DB::OpenForReadOnly(options, path, descriptors, &handles, &raw);
  } else {
    rs = rocksdb::DB::Open(options, path, descriptors, &handles, &raw);
  }
  if (!rs.ok()) {
    if (IsLockHeld(rs)) {
      return Status::IOError(fmt::format("database {} is in use by another process", path));
    }
    return FromRocks(rs, "cannot open RocksDB at " + path);
  }
  std::unique_ptr<LdbDb> db(new LdbDb(path));
  db->db_.reset(raw);
  for (size_t i = 0; i < handles.size(); ++i) db->handles_[names[i]] = handles[i];
  *out = std::move(db);
  return Status::OK();
}

LdbDb::LdbDb(std::string path) : path_(std::move(path)) {}

LdbDb::~LdbDb() {
  if (!db_) return;
  for (auto& [name, handle] : handles_) db_->DestroyColumnFamilyHandle(handle);
  db_->Close().PermitUncheckedError();  // nothing left to report it to
}

std::vector<std::string> LdbDb::DataFamilies() const {
  std::vector<std::string> names;
  for (const auto& [name, handle] : handles_) {
    if (name != kMetaFamily) names.push_back(name);
  }
  return names;  // sorted: handles_ is a map
}

bool LdbDb::HasFamily(std::string_view name) const { return handles_.count(name) != 0; }

Status LdbDb::Handle(std::string_view family, rocksdb::ColumnFamilyHandle** handle) const {
  auto it = handles_.find(family);
  if (it == handles_.end()) return NoFamily(family, path_);
  *handle = it->second;
  return Status::OK();
}

Status LdbDb::Family(const std::string& name, bool create, rocksdb::ColumnFamilyHandle** handle) {
  *handle = nullptr;
  if (name == kMetaFamily) return RejectMetaFamily();
  if (auto it = handles_.find(name); it != handles_.end()) {
    *handle = it->second;
    return Status::OK();
  }
  if (!create) return Status::OK();
  rocksdb::Status rs = db_->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), name, handle);
  if (!rs.ok())
    return FromRocks(rs, "cannot create column family " + Escape(name) + " in " + path_);
  handles_[name] = *handle;
  return Status::OK();
}

Status LdbDb::Put(std::string_view family, std::string_view key, std::string_view value) {
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  Status s = Handle(family, &handle);
  if (!s.ok()) return s;
  rocksdb::Status rs = db_->Put(rocksdb::WriteOptions(), handle, ToSlice(key), ToSlice(value));
  return rs.ok() ? Status::OK() : FromRocks(rs, "cannot write to " + path_);
}

Status LdbDb::Get(std::string_view family, std::string_view key, std::string* value) const {
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  Status s = Handle(family, &handle);
  if (!s.ok()) return s;
  rocksdb::Status rs = db_->Get(rocksdb::ReadOptions(), handle, ToSlice(key), value);
  if (rs.IsNotFound()) return Status::NotFound("not found: " + Escape(key));
  return rs.ok() ? Status::OK() : FromRocks(rs, "cannot read " + path_);
}

Status LdbDb::Delete(std::string_view family, std::string_view key) {
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  Status s = Handle(family, &handle);
  if (!s.ok()) return s;
  rocksdb::Status rs = db_->Delete(rocksdb::WriteOptions(), handle, ToSlice(key));
  return rs.ok() ? Status::OK() : FromRocks(rs, "cannot write to " + path_);
}

Status LdbDb::Scan(
    std::string_view family,
    const std::function<Status(std::string_view key, std::string_view value)>& fn) const {
  rocksdb::ColumnFamilyHandle* handle = nullptr;
  Status s = Handle(family, &handle);
  if (!s.ok()) return s;
  rocksdb::ReadOptions read;
  read.fill_cache = false;  // one pass over everything; keep the cache for others
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read, handle));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    s = fn(ToView(it->key()), ToView(it->value()));
    if (!s.ok()) return s;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "cannot scan " + path_);
  return Status::OK();
}

Status TagsByName(std::vector<std::string> names, std::map<std::string, FamilyTag>* tags) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (names.size() > size_t{std::numeric_limits<FamilyTag>::max()} + 1) {
    return Status::InvalidArgument(
        fmt::format("{} column families: more than a tag can number", names.size()));
  }
  tags->clear();
  for (size_t i = 0; i < names.size(); ++i) (*tags)[names[i]] = static_cast<FamilyTag>(i);
  return Status::OK();
}

Status BuildTree(const LdbDb& db, const std::vector<std::string>& families,
                 const std::map<std::string, FamilyTag>& tags, MerkleTree* tree) {
  TaggedFamilies tagged;
  for (const std::string& family : families) {
    auto tag = tags.find(family);
    if (tag == tags.end()) {
      return Status::InvalidArgument(fmt::format("column family '{}' has no tag", Escape(family)));
    }
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    Status s = db.Handle(family, &handle);
    if (!s.ok()) return s;
    tagged.emplace_back(tag->second, handle);
  }
  return ScanIntoTree(db.db(), /*snapshot=*/nullptr, tagged, TreeScanOptions(), tree);
}

Status Root(const LdbDb& db, const std::optional<std::string>& family, RootInfo* info) {
  std::vector<std::string> families = db.DataFamilies();
  std::map<std::string, FamilyTag> tags;
  Status s = TagsByName(families, &tags);
  if (!s.ok()) return s;
  if (family) {
    if (*family == kMetaFamily) return RejectMetaFamily();
    if (!db.HasFamily(*family)) return NoFamily(*family, db.path());
    families = {*family};
  }
  MerkleTree tree;
  s = BuildTree(db, families, tags, &tree);
  if (!s.ok()) return s;
  info->root = tree.root_hash();
  info->keys = tree.size();
  return Status::OK();
}

Status DiffDatabases(const LdbDb& a, const LdbDb& b, const std::optional<std::string>& family,
                     std::vector<DiffLine>* lines) {
  std::vector<std::string> families_a = a.DataFamilies();
  std::vector<std::string> families_b = b.DataFamilies();
  std::vector<std::string> all = families_a;
  all.insert(all.end(), families_b.begin(), families_b.end());
  std::map<std::string, FamilyTag> tags;
  Status s = TagsByName(all, &tags);
  if (!s.ok()) return s;
  if (family) {
    if (*family == kMetaFamily) return RejectMetaFamily();
    if (tags.count(*family) == 0) {
      return NoFamily(*family, fmt::format("{} nor {}", a.path(), b.path()));
    }
    families_a =
        a.HasFamily(*family) ? std::vector<std::string>{*family} : std::vector<std::string>{};
    families_b =
        b.HasFamily(*family) ? std::vector<std::string>{*family} : std::vector<std::string>{};
  }
  MerkleTree tree_a, tree_b;
  s = BuildTree(a, families_a, tags, &tree_a);
  if (s.ok()) s = BuildTree(b, families_b, tags, &tree_b);
  if (!s.ok()) return s;

  std::vector<const std::string*> names(tags.size());
  for (const auto& [name, tag] : tags) names[tag] = &name;
  lines->clear();
  for (DiffEntry& entry : Diff(tree_a, tree_b)) {
    lines->push_back(DiffLine{*names[entry.family], std::move(entry.key), entry.kind});
  }
  // Diff returns key-hash order; people and scripts want a stable, readable one.
  std::sort(lines->begin(), lines->end(), [](const DiffLine& x, const DiffLine& y) {
    return std::tie(x.family, x.key) < std::tie(y.family, y.key);
  });
  return Status::OK();
}

std::string Escape(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char c : bytes) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  return out;
}

std::string ToHex(std::string_view bytes) { return plugin::HexBytes(bytes); }

Status FromHex(std::string_view hex, std::string* bytes) {
  std::string_view digits = hex;
  if (digits.size() >= 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
  }
  if (digits.size() % 2 != 0) {
    return Status::InvalidArgument(
        fmt::format("bad hex input '{}': an odd number of digits", Escape(hex)));
  }
  std::string out;
  out.reserve(digits.size() / 2);
  for (size_t i = 0; i < digits.size(); i += 2) {
    int hi = HexDigit(digits[i]), lo = HexDigit(digits[i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::InvalidArgument(fmt::format("bad hex input '{}': '{}' is not a hex digit",
                                                 Escape(hex),
                                                 Escape(digits.substr(hi < 0 ? i : i + 1, 1))));
    }
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  *bytes = std::move(out);
  return Status::OK();
}

Status DecodeArg(std::string_view arg, bool hex, std::string* out) {
  if (hex) return FromHex(arg, out);
  out->assign(arg);
  return Status::OK();
}

std::string FormatDiffLine(const DiffLine& line, bool key_hex) {
  char sign = '~';
  if (line.kind == DiffKind::kOnlyInA) sign = '-';
  if (line.kind == DiffKind::kOnlyInB) sign = '+';
  return fmt::format("{} {}{}", sign, FamilyPrefix(line.family), FormatBytes(line.key, key_hex));
}

// What get prints for `key`, read with status `s`: the value as stored, like
// ldb (only --hex makes binary values printable); exit 1 if absent.
static int PrintGot(const LdbRequest& r, const std::string& family, const std::string& key,
                    const Status& s, const std::string& value, std::ostream& out,
                    std::ostream& err) {
  if (s.IsNotFound()) {
    fmt::print(err, "sdiff-ldb: not found: {}{}\n", FamilyPrefix(family),
               FormatBytes(key, r.key_hex));
    return kExitDifferent;
  }
  if (!s.ok()) return ReportError(err, s.message());
  fmt::print(out, "{}\n", r.value_hex ? ToHex(value) : value);
  return kExitOk;
}

// get --min-seq: the replica as a secondary (which follows the live
// follower's writes, unlike a read-only open) once it holds r.min_seq.
static int RunGetAtSeq(const LdbRequest& r, const std::string& family, const std::string& key,
                       std::ostream& out, std::ostream& err) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path secondary = fs::temp_directory_path(ec) /
                       fmt::format("sdiff-ldb-secondary-{}-{}", getpid(),
                                   std::chrono::steady_clock::now().time_since_epoch().count());
  std::unique_ptr<ReplicaReader> reader;
  Status s = ReplicaReader::Open(r.db, secondary.string(), &reader);
  if (!s.ok()) {  // a missing replica is NotFound too, not a missing key
    fs::remove_all(secondary, ec);
    return ReportError(err, s.message());
  }
  s = reader->WaitForSequence(r.min_seq, r.wait_ms);
  std::string value;
  if (s.ok()) s = reader->Get(family, key, &value);
  reader.reset();
  fs::remove_all(secondary, ec);
  if (s.IsTimedOut()) {
    return ReportError(err, fmt::format("{} has not applied master sequence {} within {} ms: {}",
                                        r.db, r.min_seq, r.wait_ms.count(), s.message()));
  }
  return PrintGot(r, family, key, s, value, out, err);
}

int RunLdb(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  if (!r.master.empty()) return RunRemoteLdb(r, out, err);
  std::string key, value;
  Status s;
  if (r.command == LdbCommand::kPut || r.command == LdbCommand::kGet ||
      r.command == LdbCommand::kDelete) {
    s = DecodeArg(r.key, r.key_hex, &key);
  }
  if (s.ok() && r.command == LdbCommand::kPut) s = DecodeArg(r.value, r.value_hex, &value);
  if (!s.ok()) return ReportError(err, s.message());
  std::string family = r.column_family.value_or(std::string(rocksdb::kDefaultColumnFamilyName));

  std::unique_ptr<LdbDb> db;
  switch (r.command) {
    case LdbCommand::kPut:
    case LdbCommand::kDelete:
      s = LdbDb::Open(r.db, LdbDb::Mode::kReadWrite, &db, r.options_file);
      if (s.ok()) {
        s = r.command == LdbCommand::kPut ? db->Put(family, key, value) : db->Delete(family, key);
      }
      if (!s.ok()) return ReportError(err, s.message());
      fmt::print(out, "OK\n");
      return kExitOk;
    case LdbCommand::kGet:
      if (r.min_seq > 0) return RunGetAtSeq(r, family, key, out, err);
      s = LdbDb::Open(r.db, LdbDb::Mode::kReadOnly, &db, r.options_file);
      if (!s.ok()) return ReportError(err, s.message());  // a missing database is NotFound too
      s = db->Get(family, key, &value);
      return PrintGot(r, family, key, s, value, out, err);
    case LdbCommand::kScan:
      return RunScan(r, out, err);
    case LdbCommand::kRoot: {
      RootInfo info;
      s = LdbDb::Open(r.db, LdbDb::Mode::kReadOnly, &db, r.options_file);
      if (s.ok()) s = Root(*db, r.column_family, &info);
      if (!s.ok()) return ReportError(err, s.message());
      fmt::print(out, "root {} keys {}\n", info.root.ToHex(), info.keys);
      return kExitOk;
    }
    case LdbCommand::kDiff:
      return RunDiff(r, out, err);
    case LdbCommand::kRepair:
    case LdbCommand::kLoad:
    case LdbCommand::kAudit:
      break;  // the flag parser lets these through only with --master
  }
  return ReportError(err, "this command needs --master");
}

int ReportError(std::ostream& err, std::string_view message) {
  std::string line(message);
  std::replace(line.begin(), line.end(), '\n', ' ');
  fmt::print(err, "sdiff-ldb: {}\n", line);
  return kExitError;
}

}  // namespace sdiff::tools
