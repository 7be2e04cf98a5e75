// sdiff-rocks-follower: keeps a RocksDB directory a read replica of a master,
// reconnecting forever, until SIGINT or SIGTERM.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "plugin/follower.h"
#include "tools/daemon_util.h"
#include "tools/metrics_pages.h"
#include "tools/progress_renderer.h"
#include "tools/rocks_options.h"

int main(int argc, char** argv) {
  using namespace sdiff;
  tools::BlockStopSignals();
  CLI::App app{"sdiff-rocks-follower: keep a RocksDB directory a replica of an sdiff master",
               "sdiff-rocks-follower"};
  tools::AddVersionFlag(app, "sdiff-rocks-follower");
  tools::AddConfigFlag(app);
  app.footer(tools::kDaemonExitFooter);
  plugin::FollowerOptions options;
  double repair_interval_s = 0;
  tools::SecurityFlags security;
  tools::MetricsFlag metrics;
  tools::AuditFlags audit;
  tools::LogFlags log;
  std::string options_file;
  app.add_option("--db", options.db_path, "the replica's directory (created if missing)")
      ->required();
  app.add_option("--master", options.client.master, "HOST:PORT of the master")
      ->check(tools::HostPort())
      ->required();
  app.add_option("--options-file", options_file,
                 "a RocksDB OPTIONS file (as ldb and db_bench take) to open the replica and "
                 "create its column families with (default: RocksDB's defaults)")
      ->type_name("FILE");
  tools::MinFreeFlag min_free;
  min_free.Add(app, "stops applying");
  app.add_flag("--clone,!--no-clone", options.clone_files,
               "when the replica is empty, copy the master's database files if it offers "
               "them (default), or (--no-clone) always receive its keys");
  app.add_flag("--sync", options.sync_writes,
               "fsync every applied batch: a power loss then loses no batch the replica "
               "applied (without it, the replica resumes from before the lost ones)");
  auto* ledger =
      app.add_option("--ledger", options.ledger,
                     "append every key a diff or bootstrap changes or deletes to FILE, with the "
                     "value it had, before changing it (replay: sdiff-ldb --master=M load "
                     "FILE); also lets a directory holding data of its own (a former master) "
                     "become a replica")
          ->type_name("FILE");
  app.add_flag("--discard", options.discard,
               "let a directory holding data but no follower state (a former master, a plain "
               "RocksDB) become a replica, its own data overwritten without a record")
      ->excludes(ledger);
  app.add_option("--repair-interval", repair_interval_s,
                 "seconds between anti-entropy diffs while connected (0: off)")
      ->check(tools::NonNegative());
  std::string listen;
  app.add_option("--listen", listen,
                 "HOST:PORT to serve followers of this follower on, as its master would (a "
                 "chain; port 0: any); the secret and TLS flags apply to them too")
      ->check(tools::HostPort());
  tools::ServeFlags serve;
  serve.Add(app);
  security.Add(app);
  metrics.Add(app);
  audit.Add(app);
  log.Add(app);
  if (int rc = tools::ParseOrExit(app, argc, argv); rc >= 0) return rc;
  const std::string name = "sdiff-rocks-follower";
  tools::SetUpLogging(name, log);

  tools::ProgressRenderer progress(
      tools::ProgressRenderer::ForStderr(!log.json()));  // outlives the follower
  options.progress = progress.Callback();
  options.client.repair_interval =
      std::chrono::milliseconds(static_cast<int64_t>(repair_interval_s * 1000));
  options.audit = audit.Options();
  options.min_free_bytes = min_free.bytes();
  Status s = security.Load(tools::SecurityFlags::Side::kClient, &options.client.secret,
                           &options.client.tls);
  if (!s.ok()) return tools::Fail(name, s);
  if (listen.empty() && tools::ServeFlags::Given(app)) {
    return tools::UsageError(name,
                             "--max-connections, --resume-window-mb and --follower-backlog-mb "
                             "apply to the followers of this follower: they need --listen");
  }
  if (!listen.empty()) {
    // Its followers see it as their master: the same secret, its certificate.
    s = security.Load(tools::SecurityFlags::Side::kServer, &options.relay.server.secret,
                      &options.relay.server.tls);
    if (!s.ok()) return tools::Fail(name, s);
    options.relay.server.listen = listen;
    options.relay.resume_window_bytes = serve.resume_window_bytes();
    serve.Apply(&options.relay.server);
  }
  // Checked before anything is created: a bad file leaves the replica as it was.
  s = tools::LoadReplicaOptions(options_file, &options.rocks);
  if (!s.ok()) return tools::Fail(name, s);
  std::unique_ptr<plugin::Follower> follower;
  s = plugin::Follower::Open(options, &follower);
  if (!s.ok()) return tools::Fail(name, s);
  fmt::print("following {} into {}\n", options.client.master, options.db_path);
  // As the master says it: scripts and tests read the port from this line.
  if (follower->port() != 0)
    fmt::print("serving {} on port {}\n", options.db_path, follower->port());
  std::fflush(stdout);
  std::unique_ptr<net::MetricsServer> metrics_server;  // stops before the follower closes
  s = metrics.Start(tools::FollowerPages(follower.get(), options), &metrics_server);
  if (!s.ok()) return tools::Fail(name, s);

  const char* signal = tools::WaitForStopSignal();
  spdlog::info("{}: stopping", signal);
  metrics_server.reset();
  follower.reset();  // finishes the write in hand, closes the database
  return tools::kExitStopped;
}
