#include "shared/store/pg_array.h"

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
    } else if (std::size_t n = c == '\0' ? 0 : utf8_sequence_length(s, i); n > 0) {
      out_.append(s.substr(i, n));
      i += n;
    } else {
      out_ += "\xef\xbf\xbd";  // U+FFFD for a NUL (Postgres text cannot hold one) or invalid UTF-8
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
