// sdiff-rocks-master: opens a RocksDB directory that no other process holds and
// serves it to followers until SIGINT or SIGTERM.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plugin/lineage.h"
#include "plugin/master.h"
#include "tools/daemon_util.h"
#include "tools/metrics_pages.h"
#include "tools/progress_renderer.h"

int main(int argc, char** argv) {
  using namespace sdiff;
  tools::BlockStopSignals();
  CLI::App app{"sdiff-rocks-master: serve a RocksDB directory to sdiff followers",
               "sdiff-rocks-master"};
  tools::AddVersionFlag(app, "sdiff-rocks-master");
  tools::AddConfigFlag(app);
  app.footer(tools::kDaemonExitFooter);
  std::string db_path, listen = "127.0.0.1:8123";
  bool allow_writers = false;
  bool sync = false;
  bool promote = false;
  tools::SecurityFlags security;
  tools::MetricsFlag metrics;
  tools::AuditFlags audit;
  tools::DatabaseFlags database;
  tools::LogFlags log;
  tools::MinFreeFlag min_free;
  app.add_option("--db", db_path, "the RocksDB directory to serve")->required();
  database.Add(app);
  app.add_option("--listen", listen, "HOST:PORT to accept followers on (port 0: any)")
      ->check(tools::HostPort())
      ->capture_default_str();
  security.Add(app);
  metrics.Add(app);
  audit.Add(app);
  log.Add(app);
  min_free.Add(app, "refuses writes through it (--allow-writers)");
  app.add_flag("--promote", promote,
               "make a stopped follower's directory a master's: keep its data, serve it under "
               "a new identity that records the master it followed and how far, so that "
               "followers at that point resume (docs/operations.md, Failover)");
  app.add_flag("--allow-writers", allow_writers,
               "let clients that prove the shared secret write through this master "
               "(sdiff-ldb --master put/delete/load); needs --secret-file");
  tools::ServeFlags serve;
  serve.Add(app);
  app.add_flag("--sync", sync,
               "acknowledge a write through this master only once it is fsynced in the WAL, "
               "so a power loss cannot lose it; needs --allow-writers");
  size_t min_acks = 0;
  int64_t ack_timeout_ms = 5000;
  app.add_option("--min-acks", min_acks,
                 "acknowledge a write through this master only once this many followers have "
                 "applied it; needs --allow-writers")
      ->check(CLI::Range(size_t{0}, size_t{1024}))
      ->capture_default_str();
  app.add_option("--ack-timeout-ms", ack_timeout_ms,
                 "with --min-acks: how long a write waits for its followers; when it passes the "
                 "write stays committed and its writer is told it was not replicated")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  if (int rc = tools::ParseOrExit(app, argc, argv); rc >= 0) return rc;
  const std::string name = "sdiff-rocks-master";
  tools::SetUpLogging(name, log);

  if (allow_writers && security.secret_file.empty()) {
    return tools::UsageError(name,
                             "--allow-writers needs --secret-file: writers must authenticate");
  }
  if (sync && !allow_writers) {
    return tools::UsageError(
        name, "--sync applies to writes through this master: it needs --allow-writers");
  }
  if (min_acks > 0 && !allow_writers) {
    return tools::UsageError(
        name, "--min-acks applies to writes through this master: it needs --allow-writers");
  }
  tools::ProgressRenderer progress(
      tools::ProgressRenderer::ForStderr(!log.json()));  // outlives the master
  plugin::MasterOptions options;
  options.server.listen = listen;
  options.progress = progress.Callback();
  options.allow_writers = allow_writers;
  options.sync_writes = sync;
  options.server.min_acks = min_acks;
  options.server.ack_timeout = std::chrono::milliseconds(ack_timeout_ms);
  options.min_free_bytes = min_free.bytes();
  options.resume_window_bytes = serve.resume_window_bytes();
  serve.Apply(&options.server);
  options.audit = audit.Options();
  Status s = security.Load(tools::SecurityFlags::Side::kServer, &options.server.secret,
                           &options.server.tls);
  if (!s.ok()) return tools::Fail(name, s);
  tools::OpenDb db;
  s = tools::OpenDatabase(db_path, database, &db);
  if (!s.ok()) return tools::Fail(name, s);
  plugin::MasterRecord record;
  std::string promoted;
  s = plugin::TakeAsMaster(db.db.get(), db.Family(plugin::kMetaFamily), promote, &record,
                           &promoted);
  if (!s.ok()) return tools::Fail(name, s);
  if (!promoted.empty()) spdlog::warn("{}", promoted);
  options.master_id = record.master_id;
  options.lineage = record.lineage;
  std::unique_ptr<plugin::Master> master;
  s = plugin::Master::Attach(db.db.get(), db.Replicated(), options, &master);
  if (!s.ok()) return tools::Fail(name, s);
  // Scripts and tests read the port from this line when they asked for port 0.
  fmt::print("serving {} on port {}\n", db_path, master->port());
  std::fflush(stdout);
  std::unique_ptr<net::MetricsServer> metrics_server;  // stops before the master
  s = metrics.Start(tools::MasterPages(master.get(), db_path, options), &metrics_server);
  if (!s.ok()) return tools::Fail(name, s);

  const char* signal = tools::WaitForStopSignal();
  spdlog::info("{}: stopping", signal);
  metrics_server.reset();
  master.reset();              // sessions end, the tailer stops
  return tools::kExitStopped;  // `db` closes the database
}
