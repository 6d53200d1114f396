// free_port: a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read the port
// the kernel chose, close). Another process may take it before the caller binds it; prefer
// letting the server under test bind port 0 and report its port when it can.
//
// Thread-safety: safe from any thread.
#pragma once

#include <cstdint>

namespace hookrelay::test {

// Throws std::runtime_error if no socket can be bound (only when the machine is out of fds or
// ports, which no test can recover from).
std::uint16_t free_port();

}  // namespace hookrelay::test
