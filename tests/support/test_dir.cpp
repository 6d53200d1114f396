#include "tests/support/test_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hookrelay::test {
namespace {

std::string current_test_label() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string label = info ? std::string(info->test_suite_name()) + "." + info->name() : "no-test";
  for (char& c : label) {
    if (c == '/' || c == ' ') c = '_';  // parameterised test names contain '/'
  }
  return label;
}

}  // namespace

TestDir::TestDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/hookrelay-" + current_test_label() + "-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("TestDir: mkdtemp " + pattern + " failed");
  }
  path_ = pattern;
}

TestDir::~TestDir() {
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "[ TestDir ] kept for inspection: %s\n", path_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace hookrelay::test
