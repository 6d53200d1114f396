// RawClient: a plain TCP connection to 127.0.0.1 for tests that send bytes no HTTP library would
// send, or check a response byte for byte.
//
// Thread-safety: one thread per instance.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace hookrelay::test {

class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Everything the server sends until it closes the connection, one whole response has
  // arrived (when `one_response`), or `timeout` passes.
  std::string read_until_close(std::chrono::milliseconds timeout, bool one_response = false) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[8192];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (::poll(&p, 1, std::max(left, 1)) <= 0) break;
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
      if (one_response && complete(out)) break;
    }
    return out;
  }
  bool closed() const { return closed_; }
  // Whether the server has sent something (or closed) that has not been read yet.
  bool readable(std::chrono::milliseconds wait = std::chrono::milliseconds{0}) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(wait.count())) > 0;
  }

 private:
  // A response head and as many body bytes as its Content-Length says.
  static bool complete(const std::string& bytes) {
    auto end = bytes.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    auto at = bytes.find("Content-Length: ");
    if (at == std::string::npos || at > end) return true;
    return bytes.size() - (end + 4) >= std::stoul(bytes.substr(at + 16));
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

}  // namespace hookrelay::test
