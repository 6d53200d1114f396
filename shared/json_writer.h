// append_json_string: writes a JSON string literal straight into an output string, for hot
// paths that build small JSON documents by hand (nlohmann::json's per-value nodes cost an
// allocation each). Strings are escaped per RFC 8259; invalid UTF-8 bytes are replaced with
// U+FFFD.
#pragma once

#include <string>
#include <string_view>

namespace hookrelay {

// Appends `s` as a JSON string literal (quoted, escaped) to `out`.
void append_json_string(std::string& out, std::string_view s);

}  // namespace hookrelay
