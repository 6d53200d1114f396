#include "shared/routes/route_filter.h"

namespace hookrelay {

Result<JsonPointer> parse_json_pointer(std::string_view text) {
  JsonPointer p;
  p.text = std::string(text);
  if (text.empty()) return p;
  if (text.front() != '/') {
    return fail("json_pointer",
                "'" + p.text + "' is not a JSON pointer: it must be empty or start with '/'");
  }
  std::size_t pos = 1;
  while (true) {
    auto end = text.find('/', pos);
    auto raw = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    JsonPointerToken token;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '~') {
        token.key += raw[i];
      } else if (i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token.key += raw[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        return fail(
            "json_pointer",
            "'" + p.text +
                "' is not a JSON pointer: '~' must be followed by 0 or 1 (~0 is '~', ~1 is '/')");
      }
    }
    const auto& k = token.key;
    bool digits =
        !k.empty() && k.size() <= 18 && k.find_first_not_of("0123456789") == std::string::npos;
    if (digits && (k.size() == 1 || k[0] != '0')) token.index = std::stoll(k);
    p.tokens.push_back(std::move(token));
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return p;
}

}  // namespace hookrelay
