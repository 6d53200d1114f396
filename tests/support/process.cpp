#include "tests/support/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace hookrelay::test {
namespace {

// Resolved before fork: between fork and exec only async-signal-safe calls are allowed.
std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

std::vector<std::string> merged_environment(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    if (!extra.contains(key)) env.push_back(entry);
  }
  for (const auto& [key, value] : extra) env.push_back(key + "=" + value);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Runs in the forked child: async-signal-safe calls only. Writes errno to report_fd on failure.
[[noreturn]] void exec_child(pid_t parent, int log_fd, int report_fd, const char* program,
                             char* const* argv, char* const* envp) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl took effect
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd < 0 || ::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(log_fd, STDOUT_FILENO) < 0 ||
      ::dup2(log_fd, STDERR_FILENO) < 0) {
    const int err = errno;
    (void)!::write(report_fd, &err, sizeof err);
    ::_exit(127);
  }
  ::execve(program, argv, envp);
  const int err = errno;
  (void)!::write(report_fd, &err, sizeof err);
  ::_exit(127);
}

}  // namespace

Result<ChildProcess> ChildProcess::spawn(const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& extra_env,
                                         const std::filesystem::path& log_path) {
  if (argv.empty()) return fail("spawn", "empty argv");
  const std::string program = resolve_program(argv[0]);
  std::vector<std::string> args = argv;
  std::vector<std::string> env = merged_environment(extra_env);
  std::vector<char*> c_args = c_strings(args);
  std::vector<char*> c_env = c_strings(env);

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return fail("spawn", log_path.string() + ": " + std::strerror(errno));
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(log_fd);
    return fail("spawn", std::string("pipe2: ") + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) exec_child(parent, log_fd, report[1], program.c_str(), c_args.data(), c_env.data());
  const int fork_errno = errno;
  ::close(log_fd);
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return fail("spawn", std::string("fork: ") + std::strerror(fork_errno));
  }
  // exec closes the CLOEXEC pipe: EOF means it worked, an int means it did not.
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  ChildProcess child(pid, argv[0], log_path);
  if (n > 0) {
    child.reap(true);
    return fail("spawn", "cannot execute " + program + ": " + std::strerror(child_errno));
  }
  return child;
}

ChildProcess::ChildProcess(pid_t pid, std::string name, std::filesystem::path log_path)
    : pid_(pid), name_(std::move(name)), log_path_(std::move(log_path)) {}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      name_(std::move(other.name_)),
      log_path_(std::move(other.log_path_)),
      exit_status_(other.exit_status_) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !exit_status_) {
      signal(SIGKILL);
      reap(true);
    }
    pid_ = std::exchange(other.pid_, -1);
    name_ = std::move(other.name_);
    log_path_ = std::move(other.log_path_);
    exit_status_ = other.exit_status_;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0) return;
  if (!exit_status_) {
    signal(SIGKILL);
    reap(true);
  }
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "----- %s (pid %d) log tail: %s -----\n%s\n----- end of %s log -----\n",
                 name_.c_str(), static_cast<int>(pid_), log_path_.c_str(), log_tail().c_str(),
                 name_.c_str());
  }
}

bool ChildProcess::reap(bool block) {
  if (exit_status_) return true;
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return false;
  exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

bool ChildProcess::running() { return pid_ > 0 && !reap(false); }

void ChildProcess::signal(int signo) {
  if (pid_ > 0 && !exit_status_) ::kill(pid_, signo);
}

void ChildProcess::terminate() { signal(SIGTERM); }

void ChildProcess::kill() { signal(SIGKILL); }

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return exit_status_;
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  terminate();
  if (auto status = wait_exit(grace)) return *status;
  kill();
  reap(true);
  return exit_status_.value_or(-1);
}

std::string ChildProcess::read_log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string ChildProcess::log_tail(std::size_t max_bytes) const {
  std::string log = read_log();
  if (log.size() > max_bytes) log = "...\n" + log.substr(log.size() - max_bytes);
  return log;
}

}  // namespace hookrelay::test
