// Migrator: applies the forward-only SQL files NNNN_name.sql of a directory, in version order,
// that schema_migrations does not list yet.
//
// Each file runs in its own transaction together with its schema_migrations row, so a file is
// either wholly applied and recorded or not at all. The whole run holds a session advisory
// lock, so concurrent runs (several workers starting at once) are safe: the later ones wait,
// then find nothing left to apply. Files must therefore not use statements that cannot run in
// a transaction (CREATE INDEX CONCURRENTLY, VACUUM).
//
// schema_migrations keeps the SHA-256 of each file as it was applied. migrate() refuses, before
// anything runs, a directory that no longer matches the database: a file whose text changed
// since it was applied (the database has what it said then, a new one would get what it says
// now), or a file not applied yet whose version is below the newest applied one (it would run
// after that one here but before it on a new database). Rows applied before checksums were kept
// (sha256 NULL) take the current file's checksum; clearing a row's sha256 accepts the file as it
// is now.
//
// Thread-safety: migrate() opens its own connection; call it from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.h"

namespace hookrelay {

// A migration waits at most `lock_timeout_ms` for each lock it takes (PostgreSQL's lock_timeout):
// an ALTER TABLE queued behind a long transaction would otherwise hold up every statement of
// the live workers that comes after it, for as long as that transaction lasts. A file whose
// lock wait runs out is rolled back and run again, `lock_attempts` times in all,
// `retry_delay_ms` apart, before migrate() gives up (migration_failed, naming the wait).
struct MigrateOptions {
  int lock_timeout_ms = 5000;
  int lock_attempts = 12;
  int retry_delay_ms = 5000;
};

// Returns the versions ("0001", ...) applied by this call, in order; empty when up to date.
// Errors: "db_unavailable" (retryable), "migrations_dir" (missing directory, badly named or
// duplicate-version file, an applied file changed, a new file numbered below the newest applied
// one: the message starts with the file name), "migration_failed" (the message starts with the
// file name).
Result<std::vector<std::string>> migrate(const std::string& db_url,
                                         const std::string& migrations_dir,
                                         const MigrateOptions& options = {});

// The newest migration this build was made with ("0016"): the schema its statements expect.
// Taken from the source tree's migrations/ when the build is configured.
std::string_view built_schema_version();

// The newest version schema_migrations lists; "" when nothing was ever migrated (no table).
// Errors: those of PgConnection.
Result<std::string> applied_schema_version(const std::string& db_url);

// A service's check at start: logs schema_behind (an error: its statements will be refused and
// the work held until `hookrelay migrate` has run), schema_ahead (a warning: a newer release
// migrated), or nothing when the two agree. An unreachable database is only logged; the service
// meets it again on its own. Returns the applied version when it was read.
std::optional<std::string> check_schema_version(const std::string& db_url);

// $HOOKRELAY_MIGRATIONS_DIR when set, else "migrations" (relative to the working directory,
// i.e. the repository root or the container's working directory).
std::string default_migrations_dir();

}  // namespace hookrelay
