// run_devbroker: the whole hookrelay-devbroker process behind main(), so tests can link it.
//
// HEADS UP: the broker is librdkafka's mock cluster. It is IN MEMORY, keeps only about 5 MB per
// partition (older data is dropped) and loses everything on exit. It speaks the real Kafka wire
// protocol (idempotent producer, consumer groups, offset commits), which is what makes it good
// for trials and tests. It is not a place to keep data.
//
// Start-up order is a contract for whoever waits on the files: topics are created, then the
// control server listens and --control-file is written, then --bootstrap-file is written. So
// once the bootstrap file exists the broker is fully usable. Both files are written atomically
// and removed on a clean exit.
//
// Thread-safety: call once, from main.
#pragma once

#include <string>
#include <vector>

namespace hookrelay::devbroker {

// args excludes argv[0]. Returns the process exit status: 0 on --help or after SIGTERM/SIGINT,
// 1 when start-up fails, 2 for a bad flag.
int run_devbroker(const std::vector<std::string>& args);

}  // namespace hookrelay::devbroker
