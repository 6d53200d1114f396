// TestDir: a fresh directory per test for logs, bootstrap files and configs.
//
// Lives under $TMPDIR (or /tmp) as hookrelay-<Suite>.<Test>-XXXXXX. Removed on destruction if
// the current test passed; kept when it failed so the logs can be read afterwards (the path is
// printed).
//
// Thread-safety: construct and destroy on the test thread; path() may be read from any thread.
#pragma once

#include <filesystem>
#include <string_view>

namespace hookrelay::test {

class TestDir {
 public:
  // Throws std::runtime_error if the directory cannot be created.
  TestDir();
  ~TestDir();

  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // path() / name; nothing is created.
  std::filesystem::path file(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace hookrelay::test
