// ControlHandler: the devbroker's control language. One command line in, one reply line out
// ("ok ..." or "error <reason>", no trailing newline). Transport-free, so the TCP server and the
// stdin reader share it and unit tests drive it with a fake ClusterControl.
//
// Commands:
//   ping                          -> ok pong
//   bootstrap                     -> ok 127.0.0.1:p1,127.0.0.1:p2,...
//   broker down <id> | broker up <id>
//   brokers down | brokers up     all brokers
//   rtt <id|all> <ms>             added latency per response
//   errors <ApiKey> <count> <ErrorCode> [<ErrorCode> ...]
//                                 the next <count> requests of that type fail, taking the codes
//                                 in turn (one code repeats; several codes cycle)
//   clear-errors                  drop every injected error not yet consumed
//
// Thread-safety: handle() may be called from any thread; commands are serialised so "all"
// operations and clear-errors see a consistent set.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "devbroker/cluster_control.h"

namespace hookrelay::devbroker {

class ControlHandler {
 public:
  explicit ControlHandler(ClusterControl& cluster) : cluster_(cluster) {}

  std::string handle(std::string_view line);

 private:
  std::string broker_state(bool up, std::string_view id_text);
  std::string all_brokers_state(bool up);
  std::string rtt(std::string_view id_text, std::string_view ms_text);
  std::string push_errors(const std::vector<std::string>& words);
  std::string clear_errors();

  ClusterControl& cluster_;
  std::mutex mu_;
  std::set<std::int16_t> api_keys_with_errors_;  // guarded by mu_
};

}  // namespace hookrelay::devbroker
