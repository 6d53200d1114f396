// The hookrelay-worker process: wires config, Kafka consumer and producer, the Postgres store,
// the curl sender and the Worker coordinator; serves /metrics, /healthz and /readyz; runs until
// SIGTERM/SIGINT, then drains (worker.shutdown_grace_ms) and exits 0.
#pragma once

namespace hookrelay {

int run_worker(int argc, char** argv);

}  // namespace hookrelay
