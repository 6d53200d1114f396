// The hookrelay-ingest process: wires config, Kafka producer, IngestService and HttpServer, and
// runs until SIGTERM/SIGINT, then drains (stop accepting, answer what is in flight, bounded by
// ingest.shutdown_grace_ms) and returns the exit code.
#pragma once

namespace hookrelay {

int run_ingest(int argc, char** argv);

}  // namespace hookrelay
