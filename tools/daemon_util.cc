// Shared plumbing of the sdiff daemons.
#include "tools/daemon_util.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/wire.h"
#include "net/address.h"
#include "net/hmac_authenticator.h"
#include "plugin/follower_store.h"
#include "plugin/rocks_status.h"
#include "sdiff/version.h"

namespace sdiff::tools {

void BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

const char* WaitForStopSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

namespace {

// --log-level's names, which are also the levels a JSON line shows.
const std::map<std::string, spdlog::level::level_enum>& LevelNames() {
  static const auto* names = new std::map<std::string, spdlog::level::level_enum>{
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  return *names;
}

std::string LevelName(spdlog::level::level_enum level) {
  for (const auto& [name, value] : LevelNames()) {
    if (value == level) return name;
  }
  return "unknown";
}

// One JSON object a line. nlohmann-json escapes the message (quotes,
// backslashes, control bytes) and replaces bytes that are not UTF-8, so a key
// or a path in a message cannot break the line.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string program) : program_(std::move(program)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto since_epoch = msg.time.time_since_epoch();
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds);
    nlohmann::ordered_json line = {
        {"time",
         fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                     fmt::gmtime(static_cast<std::time_t>(seconds.count())), millis.count())},
        {"level", LevelName(msg.level)},
        {"program", program_},
        {"message", std::string(msg.payload.data(), msg.payload.size())}};
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(program_);
  }

 private:
  const std::string program_;
};

std::atomic<bool> json_logs{false};  // set once by SetUpLogging, read by Fail

}  // namespace

void LogFlags::Add(CLI::App& app) {
  std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "off"};
  app.add_option("--log-level", level, "the least severe log lines shown")
      ->check(CLI::IsMember(levels))
      ->capture_default_str();
  app.add_option("--log-format", format,
                 "text, or json: one object a line with time (UTC), level, program, message")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
}

void SetUpLogging(const std::string& program, const LogFlags& flags) {
  std::shared_ptr<spdlog::logger> logger;
  if (flags.json()) {
    logger = spdlog::stderr_logger_mt(program);
    logger->set_formatter(std::make_unique<JsonFormatter>(program));
    json_logs = true;
  } else {
    logger = spdlog::stderr_color_mt(program);
    // On a terminal a progress bar (tools/progress_renderer.h) may hold the last line:
    // a log line first erases it, and the bar is redrawn below.
    std::string erase_bar = isatty(STDERR_FILENO) == 1 ? "\r\x1b[K" : "";
    logger->set_pattern(erase_bar + "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  auto level = LevelNames().find(flags.level);
  logger->set_level(level != LevelNames().end() ? level->second : spdlog::level::info);
  spdlog::set_default_logger(logger);
}

int ParseOrExit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "{}: {} (see --help)\n", app.get_name(), DescribeParseError(app, e));
    return 2;
  }
  return -1;
}

std::string DescribeParseError(const CLI::App& app, const CLI::ParseError& e) {
  std::string what = e.what();
  const CLI::Option* config = app.get_config_ptr();
  if (config == nullptr || config->count() == 0) return what;
  const std::string file = config->results().front();
  // CLI11 2.1 words these for its INI origins; say which file and what in it.
  if (dynamic_cast<const CLI::FileError*>(&e) != nullptr) {
    return fmt::format("--config {}: cannot read the file (missing?)", file);
  }
  const std::string unknown = "INI was not able to parse ";
  if (dynamic_cast<const CLI::ConfigError*>(&e) != nullptr && what.rfind(unknown, 0) == 0) {
    std::string name = what.substr(unknown.size());
    const std::string section_start = ".++";  // CLI11's item for a `[section]` line
    if (name.size() > section_start.size() &&
        name.compare(name.size() - section_start.size(), section_start.size(), section_start) ==
            0) {
      return fmt::format("--config {}: unknown section [{}]", file,
                         name.substr(0, name.size() - section_start.size()));
    }
    return fmt::format("--config {}: unknown setting \"{}\"", file, name);
  }
  return what;
}

void AddConfigFlag(CLI::App& app) {
  app.set_config("--config", "",
                 "read flags from FILE, `name = value` a line (a flag's name without its "
                 "dashes); flags on the command line win")
      ->type_name("FILE");
  app.allow_config_extras(CLI::config_extras_mode::error);
}

namespace {

CLI::Validator NumberAbove(double least, bool or_equal, const std::string& words) {
  return CLI::Validator(
      [least, or_equal, words](std::string& value) -> std::string {
        char* end = nullptr;
        double number = std::strtod(value.c_str(), &end);
        bool parsed =
            !value.empty() && end == value.c_str() + value.size() && std::isfinite(number);
        bool fits = or_equal ? number >= least : number > least;
        return parsed && fits ? "" : "must be " + words + ", not " + value;
      },
      "");
}

}  // namespace

CLI::Validator HostPort() {
  return CLI::Validator(
      [](std::string& value) {
        std::string host;
        uint16_t port = 0;
        Status s = net::ParseHostPort(value, &host, &port);
        return s.ok() ? std::string() : s.message();
      },
      "HOST:PORT");
}

CLI::Validator NonNegative() { return NumberAbove(0, true, "a number of at least 0"); }
CLI::Validator Positive() { return NumberAbove(0, false, "a number above 0"); }

void AddVersionFlag(CLI::App& app, const std::string& program) {
  app.set_version_flag(
      "--version", fmt::format("{} {} (protocol {})", program, kVersion, wire::kProtocolVersion),
      "print the version of sdiff and of its wire protocol, and exit");
}

const char kDaemonExitFooter[] = R"(
Every flag can also be set in a --config file. Exit status: 0 stopped by
SIGINT or SIGTERM; 1 a runtime failure (a port in use, the database held by
another process, a RocksDB error); 2 a bad flag, value or file (one line on
stderr, nothing touched).)";

namespace {

void PrintError(const std::string& program, const std::string& what) {
  if (json_logs && spdlog::should_log(spdlog::level::err)) {
    spdlog::error("{}", what);  // the JSON line names the program
  } else {
    fmt::print(stderr, "{}: {}\n", program, what);
  }
}

}  // namespace

int UsageError(const std::string& program, const std::string& what) {
  PrintError(program, what);
  return kExitUsage;
}

int Fail(const std::string& program, const Status& s) {
  if (s.IsInvalidArgument() || s.IsNotFound()) return UsageError(program, s.message());
  PrintError(program, s.ToString());
  return kExitFailure;
}

OpenDb::~OpenDb() {
  if (!db) return;
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  db->Close();
}

std::vector<rocksdb::ColumnFamilyHandle*> OpenDb::Replicated() const {
  std::vector<rocksdb::ColumnFamilyHandle*> out;
  for (auto* h : handles) {
    const std::string& name = h->GetName();
    bool chosen = replicated.empty()
                      ? name != plugin::kMetaFamily
                      : std::find(replicated.begin(), replicated.end(), name) != replicated.end();
    if (chosen) out.push_back(h);
  }
  return out;
}

rocksdb::ColumnFamilyHandle* OpenDb::Family(std::string_view name) const {
  for (auto* h : handles) {
    if (h->GetName() == name) return h;
  }
  return nullptr;
}

void DatabaseFlags::Add(CLI::App& app) {
  app.add_flag("--create-if-missing", create_if_missing,
               "create the database if it does not exist");
  app.add_option("--options-file", options_file,
                 "a RocksDB OPTIONS file (as ldb and db_bench take) to open the database with "
                 "(default: RocksDB's defaults)")
      ->type_name("FILE");
  wal_ttl_ = app.add_option("--wal-ttl-seconds", wal_ttl_seconds,
                            "keep WAL files this long after they are flushed, for followers "
                            "resuming the stream (RocksDB's WAL_ttl_seconds; 0: no limit by age)")
                 ->check(NonNegative())
                 ->capture_default_str();
  wal_size_ = app.add_option("--wal-size-limit-mb", wal_size_limit_mb,
                             "keep flushed WAL files up to this many MiB "
                             "(RocksDB's WAL_size_limit_MB; 0: no limit by size)")
                  ->check(NonNegative())
                  ->capture_default_str();
  app.add_option("--column-families", column_families,
                 "the column families to replicate, comma-separated (default: all)")
      ->delimiter(',')
      ->type_name("NAME,...");
}

Status DatabaseFlags::Options(RocksOptions* out) const {
  Status s = LoadRocksOptions(options_file, out);
  if (!s.ok()) return s;
  out->db.create_if_missing = create_if_missing;
  bool file = !options_file.empty();
  if (!file || (wal_ttl_ != nullptr && wal_ttl_->count() > 0)) {
    out->db.WAL_ttl_seconds = wal_ttl_seconds;
  }
  if (!file || (wal_size_ != nullptr && wal_size_->count() > 0)) {
    out->db.WAL_size_limit_MB = wal_size_limit_mb;
  }
  return Status::OK();
}

namespace {

// The families a database has (just "default" for one not created yet).
std::vector<std::string> FamilyNames(const rocksdb::DBOptions& options, const std::string& path) {
  std::vector<std::string> names;
  rocksdb::Status s = rocksdb::DB::ListColumnFamilies(options, path, &names);
  if (!s.ok() || names.empty()) names = {rocksdb::kDefaultColumnFamilyName};
  return names;
}

}  // namespace

Status OpenDatabase(const std::string& path, const DatabaseFlags& flags, OpenDb* out) {
  std::error_code ec;
  bool exists = std::filesystem::exists(path, ec);
  if (!exists && !flags.create_if_missing) {
    return Status::NotFound("database " + path +
                            " does not exist (--create-if-missing creates it)");
  }
  if (exists && !std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument(path + " is not a directory");
  }
  if (exists && !std::filesystem::is_empty(path, ec) &&
      !std::filesystem::exists(std::filesystem::path(path) / "CURRENT", ec)) {
    return Status::InvalidArgument(path + " is not a RocksDB database (no CURRENT file)");
  }
  RocksOptions options;
  Status status = flags.Options(&options);
  if (!status.ok()) return status;
  std::vector<std::string> names = FamilyNames(options.db, path);
  for (const std::string& name : flags.column_families) {
    if (name == plugin::kMetaFamily) {
      return Status::InvalidArgument("--column-families: " + name +
                                     " is sdiff's own family, never replicated");
    }
    if (std::find(names.begin(), names.end(), name) == names.end()) {
      return Status::InvalidArgument(
          fmt::format("--column-families: {} has no column family \"{}\" (it has: {})", path, name,
                      fmt::join(names, ", ")));
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const auto& name : names) families.emplace_back(name, options.ForFamily(name));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options.db, path, families, &out->handles, &raw);
  if (!s.ok()) {
    if (plugin::IsLockHeld(s)) {
      return Status::IOError("database " + path + " is in use by another process");
    }
    return Status::IOError("cannot open database " + path + ": " + s.ToString());
  }
  out->db.reset(raw);
  out->replicated = flags.column_families;
  return Status::OK();
}

void SecurityFlags::Add(CLI::App& app) {
  app.add_option("--secret-file", secret_file,
                 "file holding the shared secret (at least 16 bytes; never on the command line)");
  app.add_option("--tls-cert", tls_cert, "TLS certificate (PEM)");
  app.add_option("--tls-key", tls_key, "TLS private key (PEM)");
  app.add_option("--tls-ca", tls_ca, "CA certificate (PEM) to verify the peer with");
}

Status SecurityFlags::Load(Side side, std::string* secret, net::TlsOptions* tls) const {
  if (!secret_file.empty()) {
    std::string warning;
    Status s = net::LoadSecretFile(secret_file, secret, &warning);
    if (!s.ok()) return Status::InvalidArgument(s.message());
    if (!warning.empty()) spdlog::warn("{}", warning);
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return Status::InvalidArgument("--tls-cert and --tls-key go together");
  }
  for (const auto& [flag, path] :
       {std::pair{"--tls-cert", &tls_cert}, std::pair{"--tls-key", &tls_key},
        std::pair{"--tls-ca", &tls_ca}}) {
    if (!path->empty() && !std::ifstream(*path).good()) {
      return Status::InvalidArgument(fmt::format("{} {}: cannot read the file", flag, *path));
    }
  }
  *tls = net::TlsOptions{tls_cert, tls_key, tls_ca};
  if (tls->enabled()) {
    std::unique_ptr<boost::asio::ssl::context> context;
    Status s = side == Side::kServer ? net::MakeServerTlsContext(*tls, &context)
                                     : net::MakeClientTlsContext(*tls, &context);
    if (!s.ok()) return Status::InvalidArgument(s.message());
  }
  return Status::OK();
}

void ServeFlags::Add(CLI::App& app) {
  app.add_option("--max-connections", max_connections,
                 "connections served at once (followers, and sdiff-ldb's); more are refused "
                 "and retry")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  app.add_option("--resume-window-mb", resume_window_mb,
                 "MiB of recent batches kept in memory so that a follower coming back resumes "
                 "the stream instead of diffing")
      ->check(Positive())
      ->capture_default_str();
  app.add_option("--follower-backlog-mb", backlog_mb,
                 "MiB queued for a follower that reads too slowly before it is disconnected "
                 "(it catches up when it comes back)")
      ->check(Positive())
      ->capture_default_str();
}

bool ServeFlags::Given(const CLI::App& app) {
  return app.count("--max-connections") + app.count("--resume-window-mb") +
             app.count("--follower-backlog-mb") >
         0;
}

void ServeFlags::Apply(net::MasterServerOptions* server) const {
  server->max_connections = max_connections;
  server->connection.high_water_bytes = static_cast<size_t>(backlog_mb * (1 << 20));
}

void MetricsFlag::Add(CLI::App& app) {
  app.add_option(
         "--metrics", listen,
         "HOST:PORT to serve Prometheus metrics on at /metrics, JSON at /status (port 0: any)")
      ->check(HostPort());
}

Status MetricsFlag::Start(net::MetricsServer::Routes routes,
                          std::unique_ptr<net::MetricsServer>* out) const {
  if (listen.empty()) return Status::OK();
  Status s = net::MetricsServer::Start(listen, std::move(routes), out);
  if (!s.ok()) return s;
  fmt::print("metrics on port {}\n", (*out)->port());
  std::fflush(stdout);
  return Status::OK();
}

void AuditFlags::Add(CLI::App& app) {
  app.add_option("--audit-interval", interval_s,
                 "seconds between self-audits of the merkle tree against the database (0: off)")
      ->check(NonNegative())
      ->capture_default_str();
  app.add_option("--audit-rate-mb", rate_mb,
                 "MiB per second a self-audit reads at most (0: unlimited)")
      ->check(NonNegative())
      ->capture_default_str();
}

plugin::AuditOptions AuditFlags::Options() const {
  plugin::AuditOptions o;
  o.interval = std::chrono::milliseconds(static_cast<int64_t>(interval_s * 1000));
  o.max_bytes_per_second = static_cast<uint64_t>(rate_mb * (1 << 20));
  return o;
}

void MinFreeFlag::Add(CLI::App& app, const std::string& refusal) {
  app.add_option("--min-free-mb", mb,
                 "MiB kept free on the database's disk: below that the daemon " + refusal +
                     ", and goes on by itself once there is room (0: no check)")
      ->check(NonNegative())
      ->capture_default_str();
}

}  // namespace sdiff::tools
