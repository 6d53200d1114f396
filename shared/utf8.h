// UTF-8 validation by the rules PostgreSQL applies to text (RFC 3629): no overlong forms, no
// surrogates, nothing above U+10FFFF. Used where bytes from the outside (headers, error texts)
// are written into statement parameters, which PostgreSQL would reject whole for one bad byte.
#pragma once

#include <cstddef>
#include <string_view>

namespace hookrelay {

// Length (1-4) of the valid UTF-8 sequence starting at s[i], or 0 when none starts there.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char b = at(0);
  if (b < 0x80) return 1;
  std::size_t n = (b >= 0xc2 && b <= 0xdf)   ? 2
                  : (b >= 0xe0 && b <= 0xef) ? 3
                  : (b >= 0xf0 && b <= 0xf4) ? 4
                                             : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((at(k) & 0xc0) != 0x80) return 0;
  }
  // The second byte's range is narrower after these leads (RFC 3629, section 4).
  if (b == 0xe0 && at(1) < 0xa0) return 0;  // overlong
  if (b == 0xed && at(1) > 0x9f) return 0;  // surrogate
  if (b == 0xf0 && at(1) < 0x90) return 0;  // overlong
  if (b == 0xf4 && at(1) > 0x8f) return 0;  // above U+10FFFF
  return n;
}

// Whether PostgreSQL takes `s` as a text value: valid UTF-8 (as above) with no NUL byte (text
// cannot hold one, and jsonb refuses \u0000). Outside bytes that fail this are refused where they
// come in: a statement given them fails whole (SQLSTATE class 22).
inline bool is_postgres_text(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = s[i] == '\0' ? 0 : utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The longest prefix of `s` of at most `max_bytes` that does not end inside a valid UTF-8
// sequence: for quoting outside text in messages without cutting a character in two.
inline std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t end = 0;
  while (end < max_bytes) {
    std::size_t n = utf8_sequence_length(s, end);
    if (n == 0) n = 1;  // an invalid byte stands alone
    if (end + n > max_bytes) break;
    end += n;
  }
  return s.substr(0, end);
}

}  // namespace hookrelay
