// JsonArrayWriter: builds a JSON array of flat objects straight into one string, for the
// batched Postgres parameters on the worker's hot path (nlohmann::json's per-value nodes cost
// an allocation each). Strings are escaped per RFC 8259; invalid UTF-8 bytes are replaced with
// U+FFFD, as PostgreSQL text could not hold them anyway.
//
// Thread-safety: a value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace hookrelay {

// Appends `s` as a JSON string literal (quoted, escaped) to `out`.
void append_json_string(std::string& out, std::string_view s);

class JsonArrayWriter {
 public:
  JsonArrayWriter() { out_.reserve(4096); out_ += '['; }
  void begin_object();
  void field(std::string_view name, std::string_view value);
  void field(std::string_view name, int64_t value);
  void end_object() { out_ += '}'; }
  // The finished array; the writer is spent afterwards.
  std::string take() && {
    out_ += ']';
    return std::move(out_);
  }

 private:
  void key(std::string_view name);

  std::string out_;
  bool first_object_ = true;
  bool first_field_ = true;
};

}  // namespace hookrelay
