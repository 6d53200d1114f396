// DevBrokerOptions: the command line of hookrelay-devbroker, parsed and validated.
//
// parse_options never exits or prints: it returns the options, a request for help, or an Error
// whose message names the offending flag, and main decides what to print and the exit status
// (2 for a bad flag).
//
// Thread-safety: plain values and a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/result.h"

namespace hookrelay::devbroker {

struct DevBrokerOptions {
  int brokers = 3;                         // --brokers: mock brokers, ids 1..N
  int partitions = 12;                     // --partitions: for every hookrelay topic
  int retry_tiers = 6;                     // --retry-tiers: hookrelay.retry.0 .. N-1
  int replication = 0;                     // --replication: 0 means min(3, brokers)
  std::string bootstrap_file;              // --bootstrap-file: written last, once topics exist
  std::string control_host = "127.0.0.1";  // --control HOST:PORT (loopback only)
  std::uint16_t control_port = 0;          // 0: ephemeral; the real one goes to control_file
  std::string control_file;                // --control-file: the bound control port, in decimal
  bool stdin_control = false;              // --stdin-control: even when stdin is a tty
  std::string log_level = "info";          // --log-level
  bool help = false;                       // --help

  // The replication factor actually used.
  int effective_replication() const;
};

// args excludes argv[0]. Accepts "--flag value" and "--flag=value".
Result<DevBrokerOptions> parse_options(const std::vector<std::string>& args);

std::string usage_text();

}  // namespace hookrelay::devbroker
