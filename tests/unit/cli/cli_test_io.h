// A CliIo over string streams, a fixed environment and a fake clock, for running CLI commands
// in-process; and a temporary file for configs and bodies.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_app.h"

namespace hookrelay::cli::testing {

struct TestIo {
  std::istringstream in;
  std::ostringstream out;
  std::ostringstream err;
  std::map<std::string, std::string> env;
  int64_t now = 1714564800000;  // 2024-05-01T12:00:00Z
  std::vector<int64_t> sleeps;
  CliIo io{in,
           out,
           err,
           [this](const std::string& k) -> std::optional<std::string> {
             auto it = env.find(k);
             if (it == env.end()) return std::nullopt;
             return it->second;
           },
           [this] { return now; },
           [this](int64_t ms) {
             sleeps.push_back(ms);
             now += ms;
           }};

  int run(const std::vector<std::string>& args) { return run_cli(args, io); }
};

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("hookrelay-cli-test-" + std::to_string(getpid()) + "-" +
             std::to_string(counter.fetch_add(1)) + ".yaml");
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace hookrelay::cli::testing
