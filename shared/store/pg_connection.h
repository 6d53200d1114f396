// PgConnection: one lazily opened libpqxx connection plus the rule that turns libpqxx (and other)
// exceptions into hookrelay::Error at the adapter boundary, so no pqxx exception escapes.
//
//   connection broken, server down or restarting -> Error{"db_unavailable", retryable}
//   serialization failure, deadlock, lock timeout, out of resources, the server's own I/O or
//   internal errors (SQLSTATE 40, 55P03, 53, 58, XX)
//                                                  -> Error{"db_conflict" / "db_busy", retryable}
//   the statement ran past statement_timeout (57014) -> Error{"db_timeout", retryable}
//   the statement refused as such, whatever its values: schema (undefined table, column or
//   function), privileges, a write into a view, a read-only server (SQLSTATE 42, 0A, 25006, 3D,
//   3F, 28)                                        -> Error{"db_misconfigured", retryable}
//   the statement refused for its values: data (22), constraints (23), limits (54), misuse
//                                                  -> Error{"db_error", not retryable}
//
// After a connection-level error the connection is dropped and the next run() opens a new one,
// re-running `on_connect` (which is where prepared statements are declared).
//
// Thread-safety: not thread-safe. One PgConnection per thread, or calls serialized by the owner.
#pragma once

#include <functional>
#include <memory>
#include <pqxx/connection>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "shared/result.h"

namespace hookrelay {

template <class T>
struct IsResult : std::false_type {};
template <class T>
struct IsResult<Result<T>> : std::true_type {};

// `url` (a postgresql:// URI or key=value words) with a session setting added to its `options`,
// as key=value words: with_session_setting(url, "statement_timeout", "30000"). A URL without
// options starts from PGOPTIONS (options written in the URL replace it). A URL libpq cannot
// parse is returned as it is, for the connection to report.
std::string with_session_setting(const std::string& url, const std::string& name,
                                 const std::string& value);

// `url` as key=value words, with each (keyword, value) of `defaults` added where neither the URL
// nor the keyword's environment variable (e.g. PGCONNECT_TIMEOUT) sets it: what they say wins. A
// service file's values are not looked at: the defaults win over them.
std::string with_connection_defaults(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& defaults);

// The URL a long-running service connects with, so that no wait on Postgres lasts for ever (a
// lane stuck in one would hold its work and its process's stop): each statement, lock waits
// included, ends after `statement_timeout_ms` (0: no limit) with SQLSTATE 57014, and where the
// URL leaves them unset, a connect gives up after 10 s, a server that stops acknowledging what
// was sent is dropped after 30 s (tcp_user_timeout), and one that goes silent while a statement
// runs after 30 s + 3 x 10 s of keepalives.
std::string with_service_limits(const std::string& url, int statement_timeout_ms);

class PgConnection {
 public:
  using OnConnect = std::function<void(pqxx::connection&)>;

  explicit PgConnection(std::string url, OnConnect on_connect = {});
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Calls fn(connection). fn returns a plain value, void, or a Result (passed through as is);
  // any exception it throws becomes the Error described above. `what` names the operation in
  // error messages ("claim", "migrate 0001_init.sql", ...).
  template <class F>
  auto run(const std::string& what, F&& fn) {
    using R = std::invoke_result_t<F, pqxx::connection&>;
    using Out = std::conditional_t<IsResult<R>::value, R, Result<R>>;
    try {
      pqxx::connection& c = connection();
      if constexpr (std::is_void_v<R>) {
        fn(c);
        return Out{};
      } else {
        return Out{fn(c)};
      }
    } catch (...) {
      return Out{Unexpected{current_exception_error(what)}};
    }
  }

  // Drops the connection (if any); the next run() reconnects.
  void reset();

 private:
  pqxx::connection& connection();
  // Classifies the exception being handled; drops the connection when it is no longer usable.
  Error current_exception_error(const std::string& what);

  std::string url_;
  OnConnect on_connect_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace hookrelay
