// DevBroker: a hookrelay-devbroker process for one test, with its control channel.
//
// start() runs ${HOOKRELAY_BIN_DIR}/devbroker/hookrelay-devbroker with a bootstrap file and a
// control file in the given directory, and returns once the broker has written both (which it
// does only after every topic exists), or fails with the broker's log tail in the message.
// Remember the broker is in memory (about 5 MB per partition): tests only.
//
// Thread-safety: control() and its helpers may be called from any thread (one TCP connection
// per call); start/destruction on the test thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "shared/result.h"
#include "tests/support/process.h"

namespace hookrelay::test {

struct DevBrokerConfig {
  int brokers = 3;
  int partitions = 12;
  int retry_tiers = 6;
  std::vector<std::string> extra_args = {};  // appended to the command line verbatim
  std::chrono::milliseconds start_timeout = std::chrono::seconds(20);
};

class DevBroker {
 public:
  // dir holds devbroker.log, bootstrap and control; it must outlive the DevBroker.
  static Result<std::unique_ptr<DevBroker>> start(const std::filesystem::path& dir,
                                                  const DevBrokerConfig& config = {});
  ~DevBroker();  // SIGTERM, then SIGKILL after 5 s

  // "127.0.0.1:p1,127.0.0.1:p2,..." for bootstrap.servers.
  const std::string& bootstrap() const { return bootstrap_; }
  std::uint16_t control_port() const { return control_port_; }

  // Sends one command line; returns the reply line ("ok ..." or "error ...") without the
  // newline. Fails only when the control channel itself fails (connect, I/O, 10 s timeout).
  Result<std::string> control(const std::string& line) const;

  // These fail unless the reply starts with "ok".
  Result<void> broker_down(int id) const;
  Result<void> broker_up(int id) const;
  Result<void> all_down() const;
  Result<void> all_up() const;

  ChildProcess& process() { return process_; }
  std::string read_log() const { return process_.read_log(); }

 private:
  DevBroker(ChildProcess process, std::string bootstrap, std::uint16_t control_port);
  Result<void> expect_ok(const std::string& line) const;

  ChildProcess process_;
  std::string bootstrap_;
  std::uint16_t control_port_;
};

}  // namespace hookrelay::test
