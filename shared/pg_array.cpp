#include "shared/pg_array.h"

#include "shared/utf8.h"

namespace hookrelay {

void PgArrayLiteral::add(std::string_view s) {
  separate();
  out_ += '"';
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '"' || c == '\\') {
      out_ += '\\';
      out_ += c;
      ++i;
    } else if (c == '\0') {
      out_ += "\xef\xbf\xbd";
      ++i;
    } else if (std::size_t n = utf8_sequence_length(s, i); n > 0) {
      out_.append(s.substr(i, n));
      i += n;
    } else {
      out_ += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    }
  }
  out_ += '"';
}

void PgArrayLiteral::add(int64_t value) {
  separate();
  out_ += std::to_string(value);
}

}  // namespace hookrelay
