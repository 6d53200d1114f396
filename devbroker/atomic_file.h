// write_file_atomically: readers polling for the file see either nothing or all of it, never
// a partial write (write to PATH.tmp.<pid>, fsync, rename over PATH).
//
// Thread-safety: safe to call concurrently for different paths.
#pragma once

#include <string>

#include "shared/result.h"

namespace hookrelay::devbroker {

Result<void> write_file_atomically(const std::string& path, const std::string& content);

}  // namespace hookrelay::devbroker
