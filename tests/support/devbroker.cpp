#include "tests/support/devbroker.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <charconv>
#include <fstream>
#include <istream>
#include <sstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

namespace hookrelay::test {
namespace {

constexpr int kControlTimeoutSeconds = 10;

// The broker renames complete files into place, so any content read is the whole content.
std::optional<std::string> read_first_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line) || line.empty()) return std::nullopt;
  return line;
}

}  // namespace

DevBroker::DevBroker(ChildProcess process, std::string bootstrap, std::uint16_t control_port)
    : process_(std::move(process)), bootstrap_(std::move(bootstrap)), control_port_(control_port) {}

DevBroker::~DevBroker() { process_.stop(std::chrono::seconds(5)); }

Result<std::unique_ptr<DevBroker>> DevBroker::start(const std::filesystem::path& dir,
                                                    const DevBrokerConfig& config) {
  const auto bootstrap_file = dir / "bootstrap";
  const auto control_file = dir / "control";
  std::vector<std::string> argv = {
      std::string(HOOKRELAY_BIN_DIR) + "/devbroker/hookrelay-devbroker",
      "--brokers",
      std::to_string(config.brokers),
      "--partitions",
      std::to_string(config.partitions),
      "--retry-tiers",
      std::to_string(config.retry_tiers),
      "--bootstrap-file",
      bootstrap_file.string(),
      "--control-file",
      control_file.string()};
  argv.insert(argv.end(), config.extra_args.begin(), config.extra_args.end());
  auto process = ChildProcess::spawn(argv, {}, dir / "devbroker.log");
  if (!process) return Unexpected{process.error()};

  const auto deadline = std::chrono::steady_clock::now() + config.start_timeout;
  while (true) {
    auto bootstrap = read_first_line(bootstrap_file);
    auto control = read_first_line(control_file);
    if (bootstrap && control) {
      int port = 0;
      const char* end = control->data() + control->size();
      if (std::from_chars(control->data(), end, port).ptr != end || port <= 0 || port > 65535) {
        return fail("devbroker_start", "control file holds '" + *control + "', not a port");
      }
      return std::unique_ptr<DevBroker>(new DevBroker(std::move(*process), std::move(*bootstrap),
                                                      static_cast<std::uint16_t>(port)));
    }
    if (!process->running()) {
      return fail("devbroker_start", "hookrelay-devbroker exited with status " +
                                         std::to_string(process->wait_exit({}).value_or(-1)) +
                                         " before it was ready; log:\n" + process->log_tail());
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail("devbroker_start", "hookrelay-devbroker wrote no bootstrap/control file within " +
                                         std::to_string(config.start_timeout.count()) +
                                         " ms; log:\n" + process->log_tail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::string> DevBroker::control(const std::string& line) const {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect({asio::ip::make_address("127.0.0.1"), control_port_}, ec);
  if (ec) return fail("devbroker_control", "connect to control port: " + ec.message(), true);
  // Blocking I/O bounded by socket timeouts: a wedged broker fails the test, not hangs it.
  const timeval timeout{kControlTimeoutSeconds, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  asio::write(socket, asio::buffer(line + "\n"), ec);
  if (ec) return fail("devbroker_control", "send '" + line + "': " + ec.message(), true);
  asio::streambuf reply_buffer;
  asio::read_until(socket, reply_buffer, '\n', ec);
  if (ec) return fail("devbroker_control", "no reply to '" + line + "': " + ec.message(), true);
  std::istream in(&reply_buffer);
  std::string reply;
  std::getline(in, reply);
  return reply;
}

Result<void> DevBroker::expect_ok(const std::string& line) const {
  auto reply = control(line);
  if (!reply) return Unexpected{reply.error()};
  if (reply->rfind("ok", 0) != 0) return fail("devbroker_control", "'" + line + "' -> " + *reply);
  return {};
}

Result<void> DevBroker::broker_down(int id) const {
  return expect_ok("broker down " + std::to_string(id));
}
Result<void> DevBroker::broker_up(int id) const {
  return expect_ok("broker up " + std::to_string(id));
}
Result<void> DevBroker::all_down() const { return expect_ok("brokers down"); }
Result<void> DevBroker::all_up() const { return expect_ok("brokers up"); }

}  // namespace hookrelay::test
