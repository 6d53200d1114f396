// Structured logging: one line per event, "ts=... level=... msg=<event> key=value ...".
// Per-message lines belong at debug level; what operators watch is a metric first.
//
// Thread-safety: spdlog's default logger is thread-safe; call from any thread.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace hookrelay {

// Installs the process-wide logger (stderr) at `level` ("info", "debug", ...).
void init_logging(const std::string& service, const std::string& level);

// Quotes a value for key=value logs when it has spaces, quotes or control characters.
std::string log_quote(std::string_view v);

}  // namespace hookrelay
