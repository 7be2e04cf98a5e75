// fork/exec with pipes, poll-based reads and bounded waits.
#include "test/support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace sdiff::testing {

std::string ProgramPath(const std::string& name) { return std::string(SDIFF_BIN_DIR) + "/" + name; }

std::unique_ptr<ChildProcess> ChildProcess::Start(std::vector<std::string> argv) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return nullptr;
  if (pipe2(err, O_CLOEXEC) != 0) return nullptr;
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return nullptr;
  if (pid == 0) {
    // A test binary that crashes (or is killed at CI's timeout) takes its
    // daemons with it instead of leaving them holding ports and directories.
    // The signal comes when the forking thread ends: tests start children
    // from their own thread, which outlives them.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // it died before the prctl
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    // Signals blocked in the test's threads stay blocked across exec: unblock.
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->out_fd_ = out[0];
  child->err_fd_ = err[0];
  return child;
}

ChildProcess::~ChildProcess() {
  if (!exit_code_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

void ChildProcess::Drain(int timeout_ms) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (poll(fds, 2, timeout_ms) <= 0) return;
  char buf[4096];
  for (int i = 0; i < 2; ++i) {
    if (fds[i].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) (i == 0 ? out_ : err_).append(buf, n);
    }
  }
}

bool ChildProcess::WaitForOutput(
    const std::function<bool(const std::string&, const std::string&)>& done,
    std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!done(out_, err_)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    Drain(static_cast<int>(std::min<int64_t>(left.count(), 50)));
  }
  return true;
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!exit_code_) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() > end) return std::nullopt;
    Drain(20);
  }
  Drain(0);
  Drain(0);
  return exit_code_;
}

std::optional<int> ChildProcess::Stop(int signal, std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  kill(pid_, signal);
  auto code = Wait(timeout);
  if (!code) {
    kill(pid_, SIGKILL);
    Wait(timeout);
    return std::nullopt;
  }
  return code;
}

RunResult RunProgram(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  RunResult r;
  auto child = ChildProcess::Start(std::move(argv));
  if (!child) return r;
  r.code = child->Wait(timeout);
  // Collect what is left in the pipes after exit.
  child->WaitForOutput([](const std::string&, const std::string&) { return false; },
                       std::chrono::milliseconds(50));
  r.out = child->out();
  r.err = child->err();
  return r;
}

}  // namespace sdiff::testing
