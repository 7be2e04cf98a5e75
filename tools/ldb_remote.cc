// sdiff-ldb's commands against a running master: diff and repair (the
// inspector role: one diff of the local database with the master's), put,
// delete and load (the writer role, through a master that allows writers) and
// audit (the auditor role: the master checks its tree against its database).
#include <fmt/format.h>
#include <fmt/ostream.h>
#include <rocksdb/db.h>

#include <fstream>
#include <iostream>
#include <optional>

#include "net/audit_client.h"
#include "net/writer_client.h"
#include "plugin/inspector.h"
#include "plugin/ledger.h"
#include "tools/ldb_commands.h"

namespace sdiff::tools {
namespace {

constexpr size_t kLoadOpsPerWrite = 1000;
constexpr size_t kLoadBytesPerWrite = 1 << 20;

// Prints the differences and a summary; returns how many were printed.
size_t PrintDifferences(const LdbRequest& r, const plugin::InspectResult& result, std::ostream& out,
                        size_t counts[3]) {
  size_t printed = 0;
  for (const plugin::KeyDifference& d : result.differences) {
    if (r.column_family && d.family != *r.column_family) continue;
    fmt::print(out, "{}\n", FormatDiffLine(DiffLine{d.family, d.key, d.kind}, r.key_hex));
    ++counts[static_cast<int>(d.kind)];
    ++printed;
  }
  return printed;
}

int RunInspect(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  bool repair = r.command == LdbCommand::kRepair && !r.dry_run;
  std::unique_ptr<LdbDb> db;
  Status s = LdbDb::Open(r.db, repair ? LdbDb::Mode::kReadWrite : LdbDb::Mode::kReadOnly, &db,
                         r.options_file);
  if (!s.ok()) return ReportError(err, s.message());
  if (r.column_family && repair) {
    return ReportError(err, "repair makes every replicated family equal; drop --column_family");
  }
  plugin::InspectOptions options;
  options.connect.master = r.master;
  options.connect.tls = r.tls;
  options.connect.deadline = r.timeout;
  options.secret = r.secret;
  options.repair = repair;
  plugin::FamilyResolver resolve = [&](const std::string& name, bool create,
                                       rocksdb::ColumnFamilyHandle** handle) {
    return db->Family(name, create && repair, handle);
  };
  plugin::InspectResult result;
  s = plugin::InspectMaster(db->db(), resolve, options, &result);
  if (!s.ok()) return ReportError(err, s.message());
  if (r.column_family && std::find(result.families.begin(), result.families.end(),
                                   *r.column_family) == result.families.end()) {
    return ReportError(err, fmt::format("the master does not replicate column family '{}'",
                                        Escape(*r.column_family)));
  }
  size_t counts[3] = {0, 0, 0};  // by DiffKind: only local, only master, changed
  size_t n = PrintDifferences(r, result, out, counts);
  if (r.command == LdbCommand::kDiff) {
    fmt::print(err, "{} differences: {} only in {}, {} only on master {}, {} changed\n", n,
               counts[0], r.db, counts[1], r.master, counts[2]);
    return n == 0 ? kExitOk : kExitDifferent;
  }
  fmt::print(err, "{} {} keys in {}: {} deleted, {} added, {} changed\n",
             repair ? "repaired" : "would repair", n, r.db, counts[0], counts[1], counts[2]);
  return kExitOk;
}

// put, delete and load: ops in `family` through the master.
int RunWrite(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  std::string family = r.column_family.value_or(std::string(rocksdb::kDefaultColumnFamilyName));
  std::ifstream file_stream;
  std::istream* in = nullptr;
  if (r.command == LdbCommand::kLoad) {
    if (r.file == "-") {
      in = &std::cin;
    } else {
      file_stream.open(r.file);
      if (!file_stream) return ReportError(err, fmt::format("cannot read {}", r.file));
      in = &file_stream;
    }
  }
  size_t line_number = 0;
  bool ledger = false;                     // the file is a ledger (plugin/ledger.h)
  std::optional<FamilyTag> ledger_family;  // of its lines, from its last family line
  net::NextWrite next = [&](const std::vector<FamilyInfo>& families, std::vector<Op>* ops,
                            bool* more) {
    auto tag_of = [&](const std::string& name, FamilyTag* tag) {
      auto info = std::find_if(families.begin(), families.end(),
                               [&](const FamilyInfo& f) { return f.name == name; });
      if (info == families.end()) {
        return Status::InvalidArgument(
            fmt::format("the master does not replicate column family '{}'", Escape(name)));
      }
      *tag = info->tag;
      return Status::OK();
    };
    Op op;
    if (r.command != LdbCommand::kLoad) {
      Status s = tag_of(family, &op.family);
      if (!s.ok()) return s;
      op.kind = r.command == LdbCommand::kPut ? OpKind::kPut : OpKind::kDelete;
      s = DecodeArg(r.key, r.key_hex, &op.key);
      if (s.ok() && op.kind == OpKind::kPut) s = DecodeArg(r.value, r.value_hex, &op.value);
      if (!s.ok()) return s;
      ops->push_back(std::move(op));
      *more = false;
      return Status::OK();
    }
    size_t bytes = 0;
    std::string line;
    while (ops->size() < kLoadOpsPerWrite && bytes < kLoadBytesPerWrite) {
      if (!std::getline(*in, line)) {
        if (in->bad()) return Status::IOError(fmt::format("cannot read {}", r.file));
        *more = false;
        break;
      }
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.pop_back();  // a CRLF file
      auto at_line = [&](const Status& s) {
        return Status::InvalidArgument(fmt::format("{}:{}: {}", r.file, line_number, s.message()));
      };
      if (line_number == 1 && line == plugin::kLedgerHeader) {
        if (r.column_family) {
          return at_line(Status::InvalidArgument(
              "a ledger names its column families itself; drop --column_family"));
        }
        ledger = true;
        continue;
      }
      Op put;
      if (ledger) {
        plugin::LedgerLine entry;
        Status s = plugin::ParseLedgerLine(line, &entry);
        if (s.ok() && entry.kind == plugin::LedgerLine::Kind::kFamily) {
          FamilyTag tag = 0;
          s = tag_of(entry.family, &tag);
          if (s.ok()) ledger_family = tag;
        }
        if (!s.ok()) return at_line(s);
        if (entry.kind != plugin::LedgerLine::Kind::kPut &&
            entry.kind != plugin::LedgerLine::Kind::kDelete) {
          continue;
        }
        if (!ledger_family) {
          FamilyTag tag = 0;
          s = tag_of(std::string(rocksdb::kDefaultColumnFamilyName), &tag);
          if (!s.ok()) return at_line(s);
          ledger_family = tag;
        }
        put.kind = entry.kind == plugin::LedgerLine::Kind::kPut ? OpKind::kPut : OpKind::kDelete;
        put.family = *ledger_family;
        put.key = std::move(entry.key);
        put.value = std::move(entry.value);
      } else {
        if (line.empty()) continue;
        size_t tab = line.find('\t');
        if (tab == std::string::npos) {
          return Status::InvalidArgument(
              fmt::format("{}:{}: no tab between key and value", r.file, line_number));
        }
        Status s = tag_of(family, &put.family);
        if (!s.ok()) return s;
        put.kind = OpKind::kPut;
        s = DecodeArg(std::string_view(line).substr(0, tab), r.key_hex, &put.key);
        if (s.ok()) s = DecodeArg(std::string_view(line).substr(tab + 1), r.value_hex, &put.value);
        if (!s.ok()) return at_line(s);
      }
      bytes += put.key.size() + put.value.size();
      ops->push_back(std::move(put));
    }
    return Status::OK();
  };
  net::WriterClientOptions options;
  options.connect.master = r.master;
  options.connect.tls = r.tls;
  options.connect.deadline = r.timeout;
  options.secret = r.secret;
  net::WriteSummary summary;
  Status s = net::WriteThroughMaster(options, next, &summary);
  if (r.command == LdbCommand::kLoad) {
    fmt::print(err, "loaded {} entries in {} writes through {} (master sequence {})\n", summary.ops,
               summary.writes, r.master, summary.last_seq);
  }
  if (!s.ok()) return ReportError(err, s.message());
  if (r.print_seq) fmt::print(out, "seq {}\n", summary.last_seq);
  if (summary.unreplicated > 0) {
    // Committed on the master (seq above), not on enough followers in time.
    return ReportError(
        err, fmt::format("{} ({} of {} writes not replicated)", summary.unreplicated_error,
                         summary.unreplicated, summary.writes));
  }
  if (r.command != LdbCommand::kLoad && !r.print_seq) fmt::print(out, "OK\n");
  return kExitOk;
}

// audit: one summary line, then the keys the master corrected (the first
// few); exit 1 when there were any.
int RunAudit(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  net::AuditClientOptions options;
  options.connect.master = r.master;
  options.connect.tls = r.tls;
  options.connect.deadline = r.timeout;
  options.secret = r.secret;
  AuditReport report;
  Status s = net::AuditMaster(options, &report);
  if (!s.ok()) return ReportError(err, s.message());
  fmt::print(out, "audit of {} at sequence {}: {} keys scanned, {} mismatches, {:.3f} s{}\n",
             r.master, report.seq, report.keys, report.mismatches,
             static_cast<double>(report.micros) / 1e6,
             report.mismatches == 0 ? "" : " (tree corrected; followers will diff)");
  for (const std::string& example : report.examples) fmt::print(out, "mismatch {}\n", example);
  return report.mismatches == 0 ? kExitOk : kExitDifferent;
}

}  // namespace

int RunRemoteLdb(const LdbRequest& r, std::ostream& out, std::ostream& err) {
  switch (r.command) {
    case LdbCommand::kDiff:
    case LdbCommand::kRepair:
      if (r.db.empty()) return ReportError(err, "diff and repair need --db, the local database");
      return RunInspect(r, out, err);
    case LdbCommand::kPut:
    case LdbCommand::kDelete:
    case LdbCommand::kLoad:
      if (!r.db.empty()) {
        return ReportError(err, "give --db or --master for put and delete, not both");
      }
      return RunWrite(r, out, err);
    case LdbCommand::kAudit:
      if (!r.db.empty()) return ReportError(err, "audit checks the master itself; drop --db");
      return RunAudit(r, out, err);
    default:
      return ReportError(err, "with --master, only diff, repair, put, delete, load and audit run");
  }
}

}  // namespace sdiff::tools
