// StdinControl: the control channel on stdin/stdout, for a parent process that holds the pipe
// (or a person at a terminal with --stdin-control). One reply line on stdout per command line.
// End of input stops the reader but not the broker: a parent that starts the broker with stdin
// at /dev/null must still get a running broker.
//
// Thread-safety: owns one reader thread; construct and destroy from the same thread. The
// ControlHandler must outlive it.
#pragma once

#include <atomic>
#include <thread>

#include "devbroker/control_handler.h"

namespace hookrelay::devbroker {

class StdinControl {
 public:
  explicit StdinControl(ControlHandler& handler);
  ~StdinControl();  // stops and joins the reader within about one poll interval

  StdinControl(const StdinControl&) = delete;
  StdinControl& operator=(const StdinControl&) = delete;

 private:
  void run();

  ControlHandler& handler_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace hookrelay::devbroker
