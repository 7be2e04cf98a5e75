// Loading a RocksDB OPTIONS file (tools/rocks_options.h).
#include "tools/rocks_options.h"

#include <fmt/format.h>
#include <rocksdb/convenience.h>
#include <rocksdb/env.h>
#include <rocksdb/utilities/options_util.h>

#include <algorithm>
#include <filesystem>

namespace sdiff::tools {

rocksdb::ColumnFamilyOptions RocksOptions::ForFamily(const std::string& name) const {
  for (const auto& family : families) {
    if (family.name == name) return family.options;
  }
  return rocksdb::ColumnFamilyOptions();
}

Status LoadRocksOptions(const std::string& path, RocksOptions* out) {
  *out = RocksOptions();
  if (path.empty()) return Status::OK();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::InvalidArgument(fmt::format("--options-file {}: no such file", path));
  }
  rocksdb::ConfigOptions config;
  // A misspelt option, or a comparator or merge operator RocksDB cannot build
  // here, must not pass silently (RocksDB ignores the latter by default).
  config.ignore_unknown_options = false;
  config.ignore_unsupported_options = false;
  config.input_strings_escaped = true;  // as RocksDB writes them
  config.env = rocksdb::Env::Default();
  rocksdb::Status rs = rocksdb::LoadOptionsFromFile(config, path, &out->db, &out->families);
  if (!rs.ok()) {
    // RocksDB's message can span lines (a parse error quotes the line).
    std::string why = rs.ToString();
    std::replace(why.begin(), why.end(), '\n', ' ');
    return Status::InvalidArgument(fmt::format("--options-file {}: {}", path, why));
  }
  return Status::OK();
}

Status LoadReplicaOptions(const std::string& path, plugin::ReplicaRocksOptions* out) {
  *out = plugin::ReplicaRocksOptions();
  RocksOptions loaded;
  Status s = LoadRocksOptions(path, &loaded);
  if (!s.ok()) return s;
  out->db = loaded.db;
  for (const auto& family : loaded.families) out->families[family.name] = family.options;
  s = plugin::CheckReplicaOptions(*out);
  if (!s.ok())
    return Status::InvalidArgument(fmt::format("--options-file {}: {}", path, s.message()));
  return Status::OK();
}

}  // namespace sdiff::tools
