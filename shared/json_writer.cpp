#include "shared/json_writer.h"

namespace hookrelay {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  if (n == 2 && b < 0xc2) return 0;  // overlong
  return n;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (std::size_t n = utf8_length(s, i); n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    }
  }
  out += '"';
}

void JsonArrayWriter::begin_object() {
  if (!first_object_) out_ += ',';
  first_object_ = false;
  first_field_ = true;
  out_ += '{';
}

void JsonArrayWriter::key(std::string_view name) {
  if (!first_field_) out_ += ',';
  first_field_ = false;
  append_json_string(out_, name);
  out_ += ':';
}

void JsonArrayWriter::field(std::string_view name, std::string_view value) {
  key(name);
  append_json_string(out_, value);
}

void JsonArrayWriter::field(std::string_view name, int64_t value) {
  key(name);
  out_ += std::to_string(value);
}

}  // namespace hookrelay
