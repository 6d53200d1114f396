// GrowingBody: a Boost.Beast body type for requests: a std::string that grows as the body's bytes
// arrive. Beast's string_body reserves the declared Content-Length as soon as the header is read,
// so a client declaring a large body and sending nothing held that much memory until the body
// deadline. This one starts at kStep at most and doubles, never past the declared length (a
// chunked body: never past value_type::limit, which the caller sets to its body limit before
// parsing); each step is a fresh allocation of exactly that size (std::string::reserve would round
// a step below twice the capacity up to twice it). HttpServer accounts the body's capacity against
// max_buffered_body_bytes after each read; the raw_http fuzz harness parses with it too.
//
// Thread-safety: a value type, used by one parser at a time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional.hpp>

namespace hookrelay {

struct GrowingBody {
  // A body's memory at first (or its declared length when smaller).
  static constexpr std::size_t kStep = std::size_t{64} * 1024;

  struct value_type : std::string {
    std::size_t limit = 0;  // the most a body of unknown length may grow to
  };
  static std::uint64_t size(const value_type& body) { return body.size(); }

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(boost::beast::http::header<isRequest, Fields>& /*header*/, value_type& body)
        : body_(body) {}
    void init(const boost::optional<std::uint64_t>& length, boost::beast::error_code& ec) {
      bound_ = length ? static_cast<std::size_t>(*length) : body_.limit;
      grow_to(std::min(bound_, kStep));
      ec = {};
    }
    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      const std::size_t n = boost::asio::buffer_size(buffers);
      const std::size_t had = body_.size();
      if (had + n > body_.capacity()) {
        std::size_t want = std::max(had + n, std::max(body_.capacity() * 2, kStep));
        if (bound_ >= had + n) want = std::min(want, bound_);
        grow_to(want);
      }
      body_.resize(had + n);
      ec = {};
      return boost::asio::buffer_copy(boost::asio::buffer(body_.data() + had, n), buffers);
    }
    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    void grow_to(std::size_t capacity) {
      if (capacity <= body_.capacity()) return;
      std::string grown;
      grown.reserve(capacity);
      grown.append(body_);
      static_cast<std::string&>(body_).swap(grown);
    }

    value_type& body_;
    std::size_t bound_ = 0;
  };
};

}  // namespace hookrelay
