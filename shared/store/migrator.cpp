#include "shared/store/migrator.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <regex>
#include <sstream>
#include <thread>
#include <utility>

#include "shared/log.h"
#include "shared/signing/crypto.h"
#include "shared/store/pg_connection.h"

namespace hookrelay {
namespace {

// Fixed so that every hookrelay process, of any version, contends for the same lock:
// the ASCII bytes of "hookrela".
constexpr int64_t kMigrationLockKey = 7525356009630821473;

struct MigrationFile {
  std::string version;    // "0001"
  std::string name;       // "init"
  std::string file_name;  // "0001_init.sql"
  std::filesystem::path path;
};

Result<std::vector<MigrationFile>> list_migrations(const std::string& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return fail("migrations_dir", dir + ": " + ec.message());
  static const std::regex kName(R"(^([0-9]{4})_([a-z0-9_]+)\.sql$)");
  std::vector<MigrationFile> files;
  for (const auto& entry : it) {
    if (entry.path().extension() != ".sql") continue;
    std::string file_name = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(file_name, m, kName)) {
      return fail("migrations_dir", file_name + ": expected a name like 0001_init.sql");
    }
    files.push_back(MigrationFile{m[1], m[2], file_name, entry.path()});
  }
  std::sort(files.begin(), files.end(),
            [](const MigrationFile& a, const MigrationFile& b) { return a.version < b.version; });
  for (size_t i = 1; i < files.size(); ++i) {
    if (files[i].version == files[i - 1].version) {
      return fail("migrations_dir", files[i].file_name + ": version " + files[i].version +
                                        " also used by " + files[i - 1].file_name);
    }
  }
  return files;
}

// A schema_migrations row; sha256 is "" where it was applied before checksums were kept.
struct AppliedMigration {
  std::string name;
  std::string sha256;
};

// What a file's checksum covers: its text with CRLF line ends read as LF, so one checkout with
// CRLF (git's core.autocrlf) and another with LF agree on what was applied.
std::string text_for_checksum(const std::string& sql) {
  std::string out;
  out.reserve(sql.size());
  for (std::size_t i = 0; i < sql.size(); ++i) {
    if (sql[i] == '\r' && i + 1 < sql.size() && sql[i + 1] == '\n') continue;
    out += sql[i];
  }
  return out;
}

Result<std::string> read_text(const MigrationFile& file) {
  std::ifstream in(file.path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return fail("migration_failed", file.file_name + ": cannot read " + file.path.string());
  return text.str();
}

// PostgreSQL's lock_not_available (55P03): lock_timeout ran out.
bool lock_wait_ran_out(const Error& e) {
  return e.code == "db_conflict" && e.message.find("lock timeout") != std::string::npos;
}

}  // namespace

Result<std::vector<std::string>> migrate(const std::string& db_url,
                                         const std::string& migrations_dir,
                                         const MigrateOptions& options) {
  auto files = list_migrations(migrations_dir);
  if (!files) return Unexpected{files.error()};

  // What each file says now (read once: what runs is what was compared), by version.
  std::map<std::string, std::string> file_text, file_sha256;
  for (const MigrationFile& file : *files) {
    auto sql = read_text(file);
    if (!sql) return Unexpected{sql.error()};
    file_sha256[file.version] = hex_encode(sha256(text_for_checksum(*sql)));
    file_text[file.version] = std::move(*sql);
  }

  PgConnection pg(db_url);
  // The session lock lives until `pg` closes its connection, on every return path.
  auto applied = pg.run("migrate", [](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec("SET client_min_messages = warning");  // no "already exists, skipping" chatter
    tx.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "  version text PRIMARY KEY,"
        "  name text NOT NULL,"
        "  applied_at timestamptz NOT NULL DEFAULT now())");
    // The SHA-256 of each file as applied (hex); NULL for those applied before it was kept. Added
    // only where it is missing: ALTER TABLE waits for every reader of the table (a pg_dump).
    if (tx.exec("SELECT 1 FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass"
                " AND attname = 'sha256' AND NOT attisdropped")
            .empty()) {
      tx.exec("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS sha256 text");
    }
    std::map<std::string, AppliedMigration> rows;
    for (const auto& row : tx.exec("SELECT version, name, sha256 FROM schema_migrations")) {
      rows[row[0].as<std::string>()] = AppliedMigration{
          row[1].as<std::string>(), row[2].is_null() ? std::string() : row[2].as<std::string>()};
    }
    return rows;
  });
  if (!applied) return Unexpected{applied.error()};

  // Refused before anything runs: an applied file changed since (the database has what it said
  // then, a new database would get what it says now), and a pending file numbered below the
  // newest applied one (it would run after that one here, before it on a new database).
  const std::string newest = applied->empty() ? std::string() : applied->rbegin()->first;
  std::vector<std::string> unrecorded;
  for (const MigrationFile& file : *files) {
    const std::string& now = file_sha256[file.version];
    auto row = applied->find(file.version);
    if (row == applied->end()) {
      if (file.version < newest) {
        const std::string newest_file = newest + "_" + applied->rbegin()->second.name + ".sql";
        return fail("migrations_dir",
                    file.file_name + ": version " + file.version + " is below " + newest_file +
                        ", the newest migration this database has applied: it would run after " +
                        newest + " here but before it on a new database. Number it above " +
                        newest + ".");
      }
    } else if (row->second.sha256.empty()) {
      unrecorded.push_back(file.version);
    } else if (row->second.sha256 != now) {
      return fail("migrations_dir",
                  file.file_name + ": changed since it was applied (sha256 " + row->second.sha256 +
                      " then, " + now +
                      " now): the database has what it said then. Restore the file as it was "
                      "applied and put the change in a new migration.");
    }
  }
  if (!unrecorded.empty()) {
    // Applied before checksums were kept: what the files say now is taken as what was applied.
    auto filled = pg.run("migrate", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      for (const std::string& version : unrecorded) {
        tx.exec_params(
            "UPDATE schema_migrations SET sha256 = $2 WHERE version = $1 AND sha256 IS NULL",
            version, file_sha256[version]);
      }
      tx.commit();
    });
    if (!filled) return Unexpected{filled.error()};
  }

  std::vector<std::string> done;
  for (const MigrationFile& file : *files) {
    if (applied->count(file.version) != 0) continue;
    const std::string& sql = file_text[file.version];
    const std::string lock_timeout =
        "SET LOCAL lock_timeout = " + std::to_string(std::max(options.lock_timeout_ms, 1));
    auto apply = [&] {
      return pg.run(file.file_name, [&](pqxx::connection& c) {
        pqxx::work tx(c);
        tx.exec(lock_timeout);
        tx.exec(sql);
        tx.exec_params("INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                       file.version, file.name, file_sha256[file.version]);
        tx.commit();
      });
    };
    auto r = apply();
    for (int attempt = 1; !r && lock_wait_ran_out(r.error()); ++attempt) {
      if (attempt >= options.lock_attempts) {
        return fail("migration_failed",
                    file.file_name + ": waited more than " +
                        std::to_string(options.lock_timeout_ms) + " ms for a lock, " +
                        std::to_string(attempt) +
                        " times: a long transaction holds a table it changes (see "
                        "pg_stat_activity); run it again once that transaction ends (" +
                        r.error().message + ")");
      }
      spdlog::warn(
          "msg=migration_lock_wait file={} attempt={} lock_timeout_ms={} action=\"rolled back, "
          "trying again in {} ms\"",
          file.file_name, attempt, options.lock_timeout_ms, options.retry_delay_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(options.retry_delay_ms));
      r = apply();
    }
    if (!r) {
      Error e = r.error();
      // A migration's own statement refused (its SQL, or a privilege it needs) is its failure,
      // not an outage to wait out.
      if (e.code == "db_error" || e.code == "db_misconfigured") {
        e.code = "migration_failed";
        e.retryable = false;
      }
      return Unexpected{std::move(e)};
    }
    done.push_back(file.version);
  }
  return done;
}

std::string_view built_schema_version() { return HOOKRELAY_SCHEMA_VERSION; }

Result<std::string> applied_schema_version(const std::string& db_url) {
  PgConnection pg(db_url);
  return pg.run("schema version", [](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    if (tx.exec1("SELECT to_regclass('schema_migrations') IS NULL")[0].as<bool>())
      return std::string();
    auto v = tx.exec1("SELECT max(version) FROM schema_migrations")[0];
    return v.is_null() ? std::string() : v.as<std::string>();
  });
}

std::optional<std::string> check_schema_version(const std::string& db_url) {
  const std::string built(built_schema_version());
  auto applied = applied_schema_version(db_url);
  if (!applied) {
    spdlog::warn("msg=schema_version_unknown error={}", log_quote(applied.error().message));
    return std::nullopt;
  }
  if (*applied < built) {
    spdlog::error(
        "msg=schema_behind applied={} needed={} action=\"statements the schema refuses are held "
        "until `hookrelay migrate` has run\"",
        applied->empty() ? "none" : *applied, built);
  } else if (*applied > built) {
    spdlog::warn(
        "msg=schema_ahead applied={} built_for={} detail=\"a newer release migrated the "
        "database; statements it refuses are held\"",
        *applied, built);
  }
  return std::move(*applied);
}

std::string default_migrations_dir() {
  const char* dir = std::getenv("HOOKRELAY_MIGRATIONS_DIR");
  return dir != nullptr && *dir != '\0' ? std::string(dir) : std::string("migrations");
}

}  // namespace hookrelay
