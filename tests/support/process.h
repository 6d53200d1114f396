// ChildProcess: a program under test (devbroker, ingest, worker, CLI) run as a real process.
//
// stdin is /dev/null; stdout and stderr are appended to one log file. The child gets
// PR_SET_PDEATHSIG=SIGKILL, so it dies if the test runner dies; note Linux ties that to the
// *thread* that spawned it, so spawn from the test thread, not from a short-lived helper thread.
// The destructor SIGKILLs a child that is still running, and, when the current test has failed,
// prints the tail of the child's log to stderr.
//
// Thread-safety: one owner thread. Movable, not copyable.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/result.h"

namespace hookrelay::test {

class ChildProcess {
 public:
  // argv[0] is a path, or a bare name looked up in $PATH. The child gets this process's
  // environment with extra_env added or overriding. Fails (not retryable) if the program cannot
  // be executed; the exec error is reported here, not as a mystery exit code later.
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv,
                                    const std::map<std::string, std::string>& extra_env,
                                    const std::filesystem::path& log_path);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // False once the child has exited (and been reaped).
  bool running();

  void terminate();  // SIGTERM; no-op once exited
  void kill();       // SIGKILL; no-op once exited

  // The exit status once the child has exited within timeout; nullopt if still running.
  // Death by signal N is reported as 128 + N, as shells do.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  // SIGTERM, wait up to grace, then SIGKILL. Returns the exit status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  const std::filesystem::path& log_path() const { return log_path_; }
  std::string read_log() const;
  // The last max_bytes of the log, for failure messages.
  std::string log_tail(std::size_t max_bytes = 4096) const;

 private:
  ChildProcess(pid_t pid, std::string name, std::filesystem::path log_path);
  bool reap(bool block);
  void signal(int signo);

  pid_t pid_ = -1;
  std::string name_;
  std::filesystem::path log_path_;
  std::optional<int> exit_status_;
};

}  // namespace hookrelay::test
