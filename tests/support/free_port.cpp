#include "tests/support/free_port.h"

#include <stdexcept>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace hookrelay::test {

std::uint16_t free_port() {
  namespace asio = boost::asio;
  asio::io_context io;
  boost::system::error_code ec;
  asio::ip::tcp::acceptor acceptor(io);
  const asio::ip::tcp::endpoint any_port(asio::ip::make_address("127.0.0.1"), 0);
  if (acceptor.open(any_port.protocol(), ec); !ec) acceptor.bind(any_port, ec);
  if (ec) throw std::runtime_error("free_port: cannot bind 127.0.0.1:0: " + ec.message());
  return acceptor.local_endpoint().port();
}

}  // namespace hookrelay::test
