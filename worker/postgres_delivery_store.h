// PostgresDeliveryStore: DeliveryStore on PostgreSQL (schema: migrations/0001_init.sql).
//
// Each call is a single SQL statement in autocommit mode, so a batch is one round trip and is
// atomic. Batches travel as one array literal per column (PgArrayLiteral) expanded with
// unnest(). Rows are touched in key order, so concurrent workers with overlapping
// batches queue behind each other instead of deadlocking.
//
// The connection opens on first use. When it breaks the call returns Error{"db_unavailable",
// retryable}, and the next call reconnects; nothing is retried inside.
//
// Thread-safety: one connection, not thread-safe. The caller serializes calls (the worker's
// store thread owns it); use one instance per thread otherwise.
#pragma once

#include <string>
#include <vector>

#include "shared/store/pg_connection.h"
#include "worker/delivery_store.h"

namespace hookrelay {

class PostgresDeliveryStore final : public DeliveryStore {
 public:
  // `url`: a libpq connection string or URI. Does not connect yet.
  explicit PostgresDeliveryStore(std::string url);

  Result<std::vector<ClaimStatus>> claim(const std::vector<DeliveryRef>& deliveries,
                                         const std::string& worker_id, int lease_seconds) override;
  Result<std::vector<ClaimStatus>> claim_and_audit(const std::vector<DeliveryRef>& deliveries,
                                                   const std::vector<InboundEventRecord>& audit,
                                                   const std::string& worker_id,
                                                   int lease_seconds) override;
  Result<std::vector<std::string>> record(const std::vector<AttemptRecord>& attempts,
                                          const std::string& worker_id) override;
  Result<int> record_inbound(const std::vector<InboundEventRecord>& events) override;
  Result<void> release(const std::vector<LeaseRef>& leases, const std::string& worker_id) override;
  Result<void> fence(const std::vector<CopyFence>& fences) override;

  // Session settings and prepared statements (hr_claim, hr_claim_audit, hr_record,
  // hr_record_inbound, hr_release, hr_fence) of every connection the store opens; public so tests
  // can plan the statements.
  static void prepare_connection(pqxx::connection& c);

 private:
  PgConnection pg_;
};

}  // namespace hookrelay
