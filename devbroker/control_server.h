// ControlServer: the control channel over TCP. Each connection sends command lines and gets one
// reply line per command, in order. Loopback only (enforced by the option parser), no auth: it
// is a fault-injection switch for tests on one machine.
//
// Thread-safety: construct, then run the io_context on any thread(s); stop() must be called on
// or posted to the io_context. The ControlHandler must outlive the server.
#pragma once

#include <cstdint>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "devbroker/control_handler.h"
#include "shared/result.h"

namespace hookrelay::devbroker {

class ControlServer {
 public:
  // Binds and listens immediately, so port() is the real port even when 0 was asked for.
  static Result<std::unique_ptr<ControlServer>> listen(boost::asio::io_context& io,
                                                       const std::string& host, std::uint16_t port,
                                                       ControlHandler& handler);

  std::uint16_t port() const { return port_; }
  void stop();

 private:
  ControlServer(boost::asio::ip::tcp::acceptor acceptor, ControlHandler& handler);
  void accept_next();

  boost::asio::ip::tcp::acceptor acceptor_;
  ControlHandler& handler_;
  std::uint16_t port_;
};

}  // namespace hookrelay::devbroker
