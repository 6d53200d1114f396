// Migrator: applies the forward-only SQL files NNNN_name.sql of a directory, in version order,
// that schema_migrations does not list yet.
//
// Each file runs in its own transaction together with its schema_migrations row, so a file is
// either wholly applied and recorded or not at all. The whole run holds a session advisory
// lock, so concurrent runs (several workers starting at once) are safe: the later ones wait,
// then find nothing left to apply. Files must therefore not use statements that cannot run in
// a transaction (CREATE INDEX CONCURRENTLY, VACUUM).
//
// Thread-safety: migrate() opens its own connection; call it from any thread.
#pragma once

#include <string>
#include <vector>

#include "shared/result.h"

namespace hookrelay {

// Returns the versions ("0001", ...) applied by this call, in order; empty when up to date.
// Errors: "db_unavailable" (retryable), "migrations_dir" (missing directory, badly named or
// duplicate-version file), "migration_failed" (the message starts with the file name).
Result<std::vector<std::string>> migrate(const std::string& db_url,
                                         const std::string& migrations_dir);

// $HOOKRELAY_MIGRATIONS_DIR when set, else "migrations" (relative to the working directory,
// i.e. the repository root or the container's working directory).
std::string default_migrations_dir();

}  // namespace hookrelay
