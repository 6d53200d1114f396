#include "devbroker/app.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "devbroker/atomic_file.h"
#include "devbroker/control_handler.h"
#include "devbroker/control_server.h"
#include "devbroker/mock_cluster.h"
#include "devbroker/options.h"
#include "devbroker/stdin_control.h"
#include "shared/kafka/wire_contract.h"
#include "shared/log.h"

namespace hookrelay::devbroker {
namespace {

std::vector<std::string> topic_names(int retry_tiers) {
  std::vector<std::string> names = {std::string(kWebhooksTopic), std::string(kCallsTopic)};
  for (int tier = 0; tier < retry_tiers; ++tier) names.push_back(retry_topic(tier));
  names.emplace_back(kDlqTopic);
  names.emplace_back(kParkedTopic);
  return names;
}

int start_failed(const Error& error) {
  spdlog::error("msg=devbroker_start_failed code={} error={}", error.code,
                log_quote(error.message));
  return 1;
}

}  // namespace

int run_devbroker(const std::vector<std::string>& args) {
  auto parsed = parse_options(args);
  if (!parsed) {
    std::cerr << "hookrelay-devbroker: " << parsed.error().message
              << "\n(try hookrelay-devbroker --help)\n";
    return 2;
  }
  const DevBrokerOptions& options = *parsed;
  if (options.help) {
    std::cout << usage_text();
    return 0;
  }
  init_logging("devbroker", options.log_level);
  // Its log goes to stderr, often piped (`hookrelay-devbroker 2>&1 | grep -m1 ready`): once the
  // reader is gone a write must fail, not kill the broker the reader started.
  std::signal(SIGPIPE, SIG_IGN);

  // Installed before anything slow so an early SIGTERM still ends in a clean exit 0.
  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);

  auto cluster = MockCluster::create(options.brokers);
  if (!cluster) return start_failed(cluster.error());
  for (const auto& topic : topic_names(options.retry_tiers)) {
    auto created =
        (*cluster)->create_topic(topic, options.partitions, options.effective_replication());
    if (!created) return start_failed(created.error());
  }

  ControlHandler handler(**cluster);
  auto server = ControlServer::listen(io, options.control_host, options.control_port, handler);
  if (!server) return start_failed(server.error());
  const std::string port = std::to_string((*server)->port());
  if (!options.control_file.empty()) {
    if (auto r = write_file_atomically(options.control_file, port + "\n"); !r)
      return start_failed(r.error());
  }
  const std::string bootstrap = (*cluster)->bootstrap();
  if (!options.bootstrap_file.empty()) {
    if (auto r = write_file_atomically(options.bootstrap_file, bootstrap + "\n"); !r) {
      // A control file left behind would name a port nobody listens on.
      if (!options.control_file.empty()) std::remove(options.control_file.c_str());
      return start_failed(r.error());
    }
  }

  std::optional<StdinControl> stdin_control;
  if (options.stdin_control || !::isatty(STDIN_FILENO)) stdin_control.emplace(handler);

  spdlog::warn(
      "msg=devbroker_in_memory detail=\"mock cluster: about 5 MB retained per partition, all "
      "data lost on exit; for trials and tests only\"");
  spdlog::info(
      "msg=devbroker_ready bootstrap={} control={}:{} brokers={} partitions={} "
      "retry_tiers={} replication={}",
      bootstrap, options.control_host, port, options.brokers, options.partitions,
      options.retry_tiers, options.effective_replication());

  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("msg=devbroker_stopping signal={}", signo);
    (*server)->stop();
    io.stop();
  });
  io.run();

  stdin_control.reset();
  // Stale files would point the next reader at ports nobody listens on.
  if (!options.bootstrap_file.empty()) std::remove(options.bootstrap_file.c_str());
  if (!options.control_file.empty()) std::remove(options.control_file.c_str());
  spdlog::info("msg=devbroker_stopped");
  return 0;
}

}  // namespace hookrelay::devbroker
