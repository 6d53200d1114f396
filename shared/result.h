// Result<T>: a value or an Error, with the member names of std::expected so it can become an
// alias once the toolchain has it. Error carries whether trying again may succeed, which is what
// every caller at an I/O boundary needs to decide.
//
// Thread-safety: a value type; no shared state.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace hookrelay {

struct Error {
  std::string code;     // stable, machine-readable ("broker_down", "bad_signature", ...)
  std::string message;  // for humans; never contains secrets
  bool retryable = false;
};

// Wraps an Error so Result<Error>-like ambiguity cannot arise; mirrors std::unexpected.
struct Unexpected {
  Error error;
};

inline Unexpected fail(std::string code, std::string message, bool retryable = false) {
  return Unexpected{Error{std::move(code), std::move(message), retryable}};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Unexpected u) : v_(std::move(u.error)) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const {
    assert(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : err_(std::move(u.error)), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return err_;
  }

 private:
  Error err_;
  bool ok_ = true;
};

}  // namespace hookrelay
