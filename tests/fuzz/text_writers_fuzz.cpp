// The writers that put outside bytes into text: append_json_string (JSON), PgArrayLiteral
// (PostgreSQL array literals) and utf8_sequence_length, which both rely on. Each is checked
// against an independent model: the text must parse back to exactly the input with every byte
// that does not start a valid UTF-8 sequence replaced by U+FFFD (and NUL, for PostgreSQL).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "shared/json_writer.h"
#include "shared/store/pg_array.h"
#include "shared/utf8.h"

using namespace hookrelay;

namespace {

constexpr std::string_view kReplacement = "\xef\xbf\xbd";

// RFC 3629 decoding written out plainly: the length of the valid sequence at s[i], or 0.
std::size_t reference_length(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) {
    return static_cast<uint32_t>(static_cast<unsigned char>(s[i + k]));
  };
  uint32_t b = byte(0);
  std::size_t n;
  uint32_t cp, min;
  if (b < 0x80) return 1;
  if ((b & 0xe0) == 0xc0) {
    n = 2;
    cp = b & 0x1f;
    min = 0x80;
  } else if ((b & 0xf0) == 0xe0) {
    n = 3;
    cp = b & 0x0f;
    min = 0x800;
  } else if ((b & 0xf8) == 0xf0) {
    n = 4;
    cp = b & 0x07;
    min = 0x10000;
  } else
    return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

std::string replaced(std::string_view s, bool replace_nul) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = reference_length(s, i);
    if (n == 0 || (replace_nul && s[i] == '\0')) {
      out += kReplacement;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// A literal as PgArrayLiteral writes it: {"text",123,"more"}. Elements as written (text
// unescaped, numbers as digits); nullopt when it is not of that form.
std::optional<std::vector<std::string>> parse_pg_array(std::string_view lit) {
  if (lit.size() < 2 || lit.front() != '{' || lit.back() != '}') return std::nullopt;
  lit = lit.substr(1, lit.size() - 2);
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < lit.size()) {
    std::string e;
    if (lit[i] == '"') {
      ++i;
      for (;;) {
        if (i >= lit.size()) return std::nullopt;
        char c = lit[i++];
        if (c == '"') break;
        if (c == '\\') {
          if (i >= lit.size()) return std::nullopt;
          c = lit[i++];
        }
        e += c;
      }
    } else {
      while (i < lit.size() && lit[i] != ',') e += lit[i++];
    }
    out.push_back(std::move(e));
    if (i < lit.size()) {
      if (lit[i] != ',') return std::nullopt;
      ++i;
      if (i == lit.size()) return std::nullopt;  // trailing comma
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Exact size, so ASan sees a read one past the end.
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string_view s(input);

  // utf8_sequence_length against the reference at every position, and against nlohmann's own
  // strict check (dump throws type_error 316 on invalid UTF-8).
  bool valid = true;
  for (std::size_t i = 0; i < s.size(); ++i) {
    std::size_t got = utf8_sequence_length(s, i);
    std::size_t want = reference_length(s, i);
    if (got != want) fuzz::fuzz_fail("utf8_sequence_length differs from RFC 3629", s.substr(i, 4));
  }
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      valid = false;
      break;
    }
    i += n;
  }
  bool nlohmann_valid = true;
  try {
    (void)nlohmann::json(input).dump();
  } catch (const nlohmann::json::type_error&) {
    nlohmann_valid = false;
  }
  fuzz::check(valid == nlohmann_valid, "UTF-8 validity differs from nlohmann::json's");

  // append_json_string: valid JSON and UTF-8, parsing back to the input with replacements.
  std::string json = "[";
  append_json_string(json, s);
  json += ",";
  append_json_string(json, s.substr(s.size() / 2));  // a cut that may split a sequence
  json += "]";
  fuzz::check(fuzz::valid_utf8(json), "append_json_string wrote invalid UTF-8", json);
  fuzz::check(nlohmann::json::accept(json), "append_json_string wrote invalid JSON", json);
  auto parsed = nlohmann::json::parse(json);
  fuzz::check(parsed[0].get<std::string>() == replaced(s, false),
              "append_json_string changed the text", json);
  fuzz::check(parsed[1].get<std::string>() == replaced(s.substr(s.size() / 2), false),
              "append_json_string changed the text of a cut", json);

  // PgArrayLiteral: text elements, an integer from the input's first bytes, and the input cut
  // in two.
  int64_t number = 0;
  for (std::size_t i = 0; i < std::min<std::size_t>(s.size(), 8); ++i) {
    number = static_cast<int64_t>((static_cast<uint64_t>(number) << 8) |
                                  static_cast<unsigned char>(s[i]));
  }
  PgArrayLiteral lit;
  lit.add(s);
  lit.add(number);
  lit.add(s.substr(0, s.size() / 3));
  lit.add(std::string_view());
  std::string text = std::move(lit).take();
  fuzz::check(fuzz::valid_utf8(text), "PgArrayLiteral wrote invalid UTF-8");
  fuzz::check(text.find('\0') == std::string::npos, "PgArrayLiteral wrote a NUL");
  auto elements = parse_pg_array(text);
  if (!elements || elements->size() != 4)
    fuzz::fuzz_fail("PgArrayLiteral is not a 4-element literal", text);
  fuzz::check((*elements)[0] == replaced(s, true), "PgArrayLiteral changed the text", text);
  fuzz::check((*elements)[1] == std::to_string(number), "PgArrayLiteral changed the number", text);
  fuzz::check((*elements)[2] == replaced(s.substr(0, s.size() / 3), true),
              "PgArrayLiteral changed a cut", text);
  fuzz::check((*elements)[3].empty(), "PgArrayLiteral changed the empty text", text);
  return 0;
}
