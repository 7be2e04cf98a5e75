// ChildProcess: runs one of the project's programs for a test, with its
// stdout and stderr captured, every wait bounded by a deadline, and the
// process killed when the test is done with it (even on failure).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdiff::testing {

// The directory the build puts programs in (SDIFF_BIN_DIR), plus the name.
std::string ProgramPath(const std::string& name);

class ChildProcess {
 public:
  // argv[0] is the program's path. Returns null if it cannot be started.
  static std::unique_ptr<ChildProcess> Start(std::vector<std::string> argv);
  ~ChildProcess();  // SIGKILL and reap if still running

  // Reads output until `done(stdout, stderr)` holds or the deadline passes.
  bool WaitForOutput(
      const std::function<bool(const std::string& out, const std::string& err)>& done,
      std::chrono::milliseconds timeout);
  // Waits for exit; returns the exit code, 128+signal if killed, or nullopt at the deadline.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Sends `signal` and waits for exit (SIGKILL after the deadline).
  std::optional<int> Stop(int signal, std::chrono::milliseconds timeout);

  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  ChildProcess() = default;
  void Drain(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_, err_;
  std::optional<int> exit_code_;
};

// Runs a program to completion: exit code (nullopt on timeout), stdout, stderr.
struct RunResult {
  std::optional<int> code;
  std::string out, err;
};
RunResult RunProgram(std::vector<std::string> argv, std::chrono::milliseconds timeout);

}  // namespace sdiff::testing
