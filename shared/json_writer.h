// The one way hookrelay turns values into JSON text. Bytes from the outside (paths, header
// values, receivers' error texts) may be any bytes; JSON text must be UTF-8, so every writer
// here replaces invalid UTF-8 with U+FFFD and never throws on content.
//
// append_json_string writes a string literal straight into an output string, for hot paths that
// build small documents by hand (nlohmann::json's per-value nodes cost an allocation each).
// json_text serialises a whole nlohmann::json document; call it instead of json::dump(), whose
// default strict mode throws type_error 316 on the first invalid byte.
//
// Thread-safety: plain functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace hookrelay {

// Appends `s` as a JSON string literal (quoted, escaped) to `out`.
void append_json_string(std::string& out, std::string_view s);

// `j` as JSON text: compact when indent < 0, else pretty with that indent. Invalid UTF-8 in any
// string becomes U+FFFD.
std::string json_text(const nlohmann::json& j, int indent = -1);

}  // namespace hookrelay
