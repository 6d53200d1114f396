#include "shared/http/http_url.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "shared/ascii.h"
#include "shared/utf8.h"

namespace hookrelay {
namespace {

constexpr std::size_t kMaxUrlBytes = 8192;

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlFree {
  void operator()(char* p) const { curl_free(p); }
};
using CurlString = std::unique_ptr<char, CurlFree>;

Unexpected invalid(std::string what) { return fail("invalid_url", std::move(what)); }

// One part of the URL, or null when curl has none.
CurlString part(CURLU* u, CURLUPart which, unsigned flags = 0) {
  char* out = nullptr;
  if (curl_url_get(u, which, &out, flags) != CURLUE_OK) return nullptr;
  return CurlString(out);
}

}  // namespace

Result<HttpUrl> parse_http_url(std::string_view text) {
  if (text.size() > kMaxUrlBytes) return invalid("longer than 8192 characters");
  if (std::any_of(text.begin(), text.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return invalid("contains spaces or control characters");
  }
  auto colon = text.find(':');
  std::string scheme = ascii_lower(text.substr(0, colon));
  if (colon == std::string_view::npos || (scheme != "http" && scheme != "https")) {
    return invalid("only http and https URLs are allowed");
  }
  // curl would read "https:/host" and "https:///host" as https://host: refuse both spellings.
  if (text.substr(colon, 3) != "://" || text.size() == colon + 3 || text[colon + 3] == '/') {
    return invalid("must be " + scheme + "://host[:port]/path");
  }
  std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
  if (!u) return fail("invalid_url", "out of memory parsing a URL", true);
  const std::string copy(text);  // curl reads a C string; NUL was refused above
  if (CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, copy.c_str(), 0); rc != CURLUE_OK) {
    return invalid(std::string("is not a valid URL: ") + curl_url_strerror(rc));
  }
  if (part(u.get(), CURLUPART_USER) || part(u.get(), CURLUPART_PASSWORD)) {
    return invalid("must not carry credentials; send them in headers");
  }
  auto host = part(u.get(), CURLUPART_HOST);
  if (!host || !*host.get()) return invalid("has no host");
  auto port = part(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  auto whole = part(u.get(), CURLUPART_URL);
  if (!port || !whole) return invalid("is not a valid URL");

  // curl decodes a percent-encoded host ("%bb", "%0a"): what it would connect to must be text
  // that every later stage (JSON envelope, headers, logs) carries unchanged.
  for (std::string_view part_text : {std::string_view(host.get()), std::string_view(whole.get())}) {
    for (std::size_t i = 0; i < part_text.size();) {
      std::size_t n = utf8_sequence_length(part_text, i);
      auto c = static_cast<unsigned char>(part_text[i]);
      if (n == 0 || c < 0x20 || c == 0x7f)
        return invalid("has a host that decodes to control bytes or invalid UTF-8");
      i += n;
    }
  }

  HttpUrl out;
  out.scheme = std::move(scheme);
  out.host = ascii_lower(host.get());
  if (out.host.size() > 1 && out.host.back() == '.')
    out.host.pop_back();  // "example.com." is example.com
  std::string_view port_text(port.get());
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
      value > 65535) {
    return invalid("has an invalid port");
  }
  out.port = static_cast<uint16_t>(value);
  out.url = whole.get();
  return out;
}

}  // namespace hookrelay
