#include "shared/store/pg_connection.h"

#include <libpq-fe.h>

#include <exception>
#include <functional>
#include <optional>
#include <pqxx/except>
#include <string_view>
#include <utility>
#include <vector>

#include "shared/log.h"

namespace hookrelay {
namespace {

enum class Kind { kUnavailable, kConflict, kBusy, kTimeout, kMisconfigured, kPermanent };

// SQLSTATE classes, see PostgreSQL's "Appendix A. Error Codes".
Kind classify_sqlstate(std::string_view state) {
  if (state.size() != 5) return Kind::kPermanent;
  std::string_view cls = state.substr(0, 2);
  if (cls == "08") return Kind::kUnavailable;  // connection exception
  if (state.substr(0, 3) == "57P") {
    return Kind::kUnavailable;  // admin/crash shutdown, cannot connect now, database dropped, idle
                                // timeout
  }
  if (cls == "40") return Kind::kConflict;             // serialization failure, deadlock
  if (state == "55P03") return Kind::kConflict;        // lock_not_available
  if (state == "57014") return Kind::kTimeout;         // statement_timeout (or a cancel request)
  if (cls == "53") return Kind::kBusy;                 // insufficient resources
  if (cls == "58" || cls == "XX") return Kind::kBusy;  // the server's own I/O or internal error
  // The database answers but refuses the statement as such, whatever its values: a table,
  // column or function missing (a schema not migrated, or migrated past this release),
  // privileges missing (42), a write into a view (0A), a read-only server such as a standby
  // after a failover (25006), a database or schema that is gone (3D, 3F), authorization (28).
  // Every statement of that kind fails alike until an operator fixes it, so it is an outage, not
  // a refusal of one delivery: a worker that isolated deliveries on it would dead-letter them all.
  // Parameters are bound, so no value can cause these: parse analysis and privilege checks do
  // not look at them.
  if (cls == "42" || cls == "0A" || state == "25006" || cls == "3D" || cls == "3F" || cls == "28") {
    return Kind::kMisconfigured;
  }
  // The statement was refused for its values: data (22), integrity constraints (23), limits such
  // as an index entry too large (54), and the rest. Sending it again cannot help; the worker
  // isolates the delivery.
  return Kind::kPermanent;
}

Error make_error(Kind kind, const std::string& what, const std::string& detail) {
  std::string message = what + ": " + detail;
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  switch (kind) {
    case Kind::kUnavailable:
      return Error{"db_unavailable", std::move(message), true};
    case Kind::kConflict:
      return Error{"db_conflict", std::move(message), true};
    case Kind::kBusy:
      return Error{"db_busy", std::move(message), true};
    case Kind::kTimeout:
      return Error{"db_timeout", std::move(message), true};
    case Kind::kMisconfigured:
      return Error{"db_misconfigured", std::move(message), true};
    case Kind::kPermanent:
      return Error{"db_error", std::move(message), false};
  }
  return Error{"db_error", std::move(message), false};
}

}  // namespace

namespace {

std::string quoted_conninfo_value(std::string_view v) {
  std::string out = "'";
  for (char ch : v) {
    if (ch == '\'' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "'";
}

// `url` as key=value words, each keyword's value passed through `edit` (nullopt: left out), with
// the keyword's environment variable (PGOPTIONS, PGCONNECT_TIMEOUT, ...) when libpq has one. A
// URL libpq cannot parse is returned as it is, for the connection to report.
std::string rewrite_conninfo(
    const std::string& url,
    const std::function<std::optional<std::string>(std::string_view keyword, const char* value,
                                                   const char* envvar)>& edit) {
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (!parsed) {
    PQfreemem(error);
    return url;
  }
  std::string out;
  for (PQconninfoOption* o = parsed; o->keyword; ++o) {
    auto v = edit(o->keyword, o->val, o->envvar);
    if (!v) continue;
    if (!out.empty()) out += ' ';
    out += std::string(o->keyword) + "=" + quoted_conninfo_value(*v);
  }
  PQconninfoFree(parsed);
  return out;
}

}  // namespace

std::string with_session_setting(const std::string& url, const std::string& name,
                                 const std::string& value) {
  const std::string setting = "-c " + name + "=" + value;
  return rewrite_conninfo(url,
                          [&](std::string_view keyword, const char* v,
                              const char* envvar) -> std::optional<std::string> {
                            if (keyword == "options") {
                              // Written here, options replace PGOPTIONS: what it says is kept,
                              // before the setting.
                              const char* base = v ? v : (envvar ? std::getenv(envvar) : nullptr);
                              return base && *base ? std::string(base) + " " + setting : setting;
                            }
                            if (!v) return std::nullopt;
                            return std::string(v);
                          });
}

std::string with_connection_defaults(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& defaults) {
  return rewrite_conninfo(url,
                          [&](std::string_view keyword, const char* v,
                              const char* envvar) -> std::optional<std::string> {
                            if (v) return std::string(v);
                            if (envvar && std::getenv(envvar))
                              return std::nullopt;  // libpq reads it from there
                            for (const auto& [name, value] : defaults) {
                              if (name == keyword) return value;
                            }
                            return std::nullopt;
                          });
}

std::string with_service_limits(const std::string& url, int statement_timeout_ms) {
  std::string out = with_connection_defaults(url, {{"connect_timeout", "10"},
                                                   {"keepalives", "1"},
                                                   {"keepalives_idle", "30"},
                                                   {"keepalives_interval", "10"},
                                                   {"keepalives_count", "3"},
                                                   {"tcp_user_timeout", "30000"}});
  if (statement_timeout_ms > 0)
    out = with_session_setting(out, "statement_timeout", std::to_string(statement_timeout_ms));
  return out;
}

PgConnection::PgConnection(std::string url, OnConnect on_connect)
    : url_(std::move(url)), on_connect_(std::move(on_connect)) {}

PgConnection::~PgConnection() = default;

void PgConnection::reset() { conn_.reset(); }

pqxx::connection& PgConnection::connection() {
  if (!conn_) {
    auto c = std::make_unique<pqxx::connection>(url_);
    if (on_connect_) on_connect_(*c);
    conn_ = std::move(c);
  }
  return *conn_;
}

Error PgConnection::current_exception_error(const std::string& what) {
  Kind kind = Kind::kPermanent;
  std::string detail;
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    kind = Kind::kUnavailable;
    detail = e.what();
  } catch (const pqxx::in_doubt_error& e) {
    // The commit may or may not have happened; the connection is gone either way.
    kind = Kind::kUnavailable;
    detail = e.what();
  } catch (const pqxx::statement_completion_unknown& e) {
    kind = Kind::kUnavailable;
    detail = e.what();
  } catch (const pqxx::sql_error& e) {
    kind = classify_sqlstate(e.sqlstate());
    detail = e.what();
  } catch (const pqxx::transaction_rollback& e) {
    kind = Kind::kConflict;
    detail = e.what();
  } catch (const std::exception& e) {
    detail = e.what();
  } catch (...) {
    detail = "unknown exception";
  }
  // Whatever the exception says, a closed connection is an outage, not a data error.
  if (kind == Kind::kPermanent && conn_ && !conn_->is_open()) kind = Kind::kUnavailable;
  if (kind == Kind::kUnavailable && conn_) {
    spdlog::warn("msg=db_connection_lost op={} error={}", log_quote(what), log_quote(detail));
    conn_.reset();
  }
  // The next try connects afresh: a read-only server is often the old primary after a failover,
  // which a new connection (resolving the name again) leaves, and a session's settings
  // (default_transaction_read_only, search_path) are read when it starts.
  if (kind == Kind::kMisconfigured) conn_.reset();
  return make_error(kind, what, detail);
}

}  // namespace hookrelay
