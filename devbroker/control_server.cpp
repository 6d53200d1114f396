#include "devbroker/control_server.h"

#include <spdlog/spdlog.h>

#include <istream>
#include <memory>

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

namespace hookrelay::devbroker {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// A command never needs more; a client that sends more without a newline is cut off.
constexpr std::size_t kMaxLineBytes = 4096;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ControlHandler& handler)
      : socket_(std::move(socket)), handler_(handler), buffer_(kMaxLineBytes) {}

  void read_next() {
    asio::async_read_until(socket_, buffer_, '\n',
                           [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                             self->on_line(ec);
                           });
  }

 private:
  void on_line(boost::system::error_code ec) {
    if (ec == asio::error::not_found) {
      reply_ = "error line too long\n";
      asio::async_write(socket_, asio::buffer(reply_),
                        [self = shared_from_this()](boost::system::error_code, std::size_t) {});
      return;
    }
    if (ec) return;  // eof or reset: the client is done
    std::istream in(&buffer_);
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    reply_ = handler_.handle(line) + "\n";
    asio::async_write(socket_, asio::buffer(reply_),
                      [self = shared_from_this()](boost::system::error_code write_ec, std::size_t) {
                        if (!write_ec) self->read_next();
                      });
  }

  tcp::socket socket_;
  ControlHandler& handler_;
  asio::streambuf buffer_;
  std::string reply_;
};

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::listen(asio::io_context& io,
                                                             const std::string& host,
                                                             std::uint16_t port,
                                                             ControlHandler& handler) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return fail("control_listen", "bad control host '" + host + "': " + ec.message());
  tcp::acceptor acceptor(io);
  const tcp::endpoint endpoint(address, port);
  if (acceptor.open(endpoint.protocol(), ec); !ec) {
    if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); !ec) {
      if (acceptor.bind(endpoint, ec); !ec)
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
  }
  if (ec) {
    return fail("control_listen",
                "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  }
  auto server = std::unique_ptr<ControlServer>(new ControlServer(std::move(acceptor), handler));
  server->accept_next();
  return server;
}

ControlServer::ControlServer(tcp::acceptor acceptor, ControlHandler& handler)
    : acceptor_(std::move(acceptor)), handler_(handler), port_(acceptor_.local_endpoint().port()) {}

void ControlServer::accept_next() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      spdlog::warn("msg=control_accept_failed error={}", ec.message());
    } else {
      std::make_shared<Session>(std::move(socket), handler_)->read_next();
    }
    accept_next();
  });
}

void ControlServer::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

}  // namespace hookrelay::devbroker
