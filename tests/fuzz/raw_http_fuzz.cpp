// Raw bytes through the HTTP/1.1 request parser hookrelay-ingest uses (Boost.Beast with its body
// type, GrowingBody, and the limits of shared/http/http_server.cpp: 64 KiB of header, 1 MiB of
// body), and every complete request on to IngestService::handle, as the server would hand it
// over.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

#include "fuzz_support.h"
#include "shared/http/growing_body.h"

using namespace hookrelay;
namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Pipelined requests, as a keep-alive connection would send them, until the bytes run out or
  // the parser refuses.
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int requests = 0; !rest.empty() && requests < 8; ++requests) {
    http::request_parser<GrowingBody> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(1 << 20);
    parser.get().body().limit = 1 << 20;
    parser.eager(true);
    boost::beast::error_code ec;
    std::size_t used = 0;
    while (!ec && !parser.is_done() && used < rest.size()) {
      std::size_t n = parser.put(boost::asio::buffer(rest.data() + used, rest.size() - used), ec);
      if (n == 0 && !ec) break;  // needs more bytes than there are
      used += n;
    }
    if (!ec && !parser.is_done() && used == rest.size()) {
      parser.put_eof(ec);  // the peer closed: a body delimited by EOF ends here
    }
    if (ec || !parser.is_done()) return 0;
    rest.remove_prefix(used);

    auto& req = parser.get();
    HttpRequest view;
    view.method = std::string_view(req.method_string().data(), req.method_string().size());
    view.target = std::string_view(req.target().data(), req.target().size());
    view.body = req.body();
    view.header = [&req](std::string_view name) -> std::optional<std::string_view> {
      auto it = req.find(boost::beast::string_view(name.data(), name.size()));
      if (it == req.end()) return std::nullopt;
      return std::string_view(it->value().data(), it->value().size());
    };
    view.for_each_header =
        [&req](const std::function<void(std::string_view, std::string_view)>& f) {
          for (const auto& h : req) {
            f(std::string_view(h.name_string().data(), h.name_string().size()),
              std::string_view(h.value().data(), h.value().size()));
          }
        };
    fuzz::handle_and_check(view);
  }
  return 0;
}
