// PgArrayLiteral: a PostgreSQL array literal ('{"a","b"}', '{1,2}') built element by element,
// for the worker's batched statements, which take one array parameter per column and expand
// them with unnest(). PostgreSQL parses such a literal several times faster than the same batch
// as jsonb, and libpqxx 6.4 binds no arrays itself.
//
// Text elements are always quoted, with '"' and '\' escaped, so any content survives (braces,
// commas, spaces, the word NULL). Bytes PostgreSQL text cannot hold (NUL, invalid UTF-8) become
// U+FFFD instead of failing the whole batch.
//
// Thread-safety: a value type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace hookrelay {

class PgArrayLiteral {
 public:
  PgArrayLiteral() {
    out_.reserve(1024);
    out_ += '{';
  }
  void add(std::string_view text);
  void add(int64_t value);
  // The finished literal; the builder is spent afterwards.
  std::string take() && {
    out_ += '}';
    return std::move(out_);
  }

 private:
  void separate() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_;
};

}  // namespace hookrelay
