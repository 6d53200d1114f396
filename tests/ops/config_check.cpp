// ops_config_check: loads configuration files with the services' own parser and validation, so a
// file under deploy/ that the processes would refuse at start fails the build's tests instead of
// a rollout. The ${VAR} references are resolved from this process's environment, which the calling
// test fills from the compose file or the example Secret.
//
// usage: ops_config_check FILE...   exit 0 when every file is valid, 1 otherwise.
#include <cstdio>

#include "shared/config/config.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE...\n", argv[0]);
    return 2;
  }
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    auto config = hookrelay::load_config_file(argv[i], hookrelay::process_env());
    if (!config) {
      std::fprintf(stderr, "%s: %s\n", argv[i], config.error().message.c_str());
      ++failures;
      continue;
    }
    std::printf("%s: ok (%zu sources, ingest drain %d ms, worker drain %d ms)\n", argv[i],
                config->sources.size(), config->ingest.shutdown_grace_ms,
                config->worker.shutdown_grace_ms);
  }
  return failures == 0 ? 0 : 1;
}
