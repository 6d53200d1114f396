// hookrelay-devbroker: a Kafka-protocol broker for one machine. IN MEMORY, about 5 MB kept per
// partition: for trials and tests only. See devbroker/app.h.
#include <string>
#include <vector>

#include "devbroker/app.h"

int main(int argc, char** argv) {
  return hookrelay::devbroker::run_devbroker(std::vector<std::string>(argv + 1, argv + argc));
}
