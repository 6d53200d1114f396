// ConfigReloader: live configuration for a running service. It holds the current Config as a
// shared_ptr<const Config> that readers load atomically (one load per request: a request sees
// one config from start to end, and one still in flight keeps the old one alive), and replaces
// it on reload() (SIGHUP) with the file read again, only when that file is valid.
//
// A refused reload (unreadable file, invalid config) leaves the old config in place, logs the
// error naming the field, and counts hookrelay_config_reloads_total{result="invalid"}; an
// applied one counts result="applied". Settings the service cannot change live (listen
// addresses, HTTP server limits, Kafka and Postgres connections, the worker's group) keep
// their old effect until a restart; a reload names each one that differs in its log line.
//
// Thread-safety: current() from any thread; reload() from one controlling thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shared/config/config.h"

namespace hookrelay {

// The dotted fields that differ between `before` and `after` and that no service applies
// without a restart.
std::vector<std::string> restart_only_changes(const Config& before, const Config& after);

class ConfigReloader {
 public:
  ConfigReloader(std::string service, std::string path, Config initial,
                 prometheus::Registry& registry, EnvLookup env = process_env());

  std::shared_ptr<const Config> current() const { return current_.load(); }

  // The service's own checks of a loaded config, for fields only it reads (the worker's SSRF
  // allowlist): an error refuses the reload like an invalid file. Set before the first reload.
  using Check = std::function<Result<void>(const Config&)>;
  void set_check(Check check) { check_ = std::move(check); }

  // Reads and validates the file again. Applied: the new config (now current). Refused: the
  // error (code "config"), the old config stays.
  Result<std::shared_ptr<const Config>> reload();

 private:
  std::string service_;
  std::string path_;
  EnvLookup env_;
  Check check_;
  std::atomic<std::shared_ptr<const Config>> current_;
  prometheus::Counter& applied_;
  prometheus::Counter& invalid_;
};

}  // namespace hookrelay
