#include "shared/delivery_queries.h"

#include <array>
#include <pqxx/pqxx>
#include <utility>

namespace hookrelay {
namespace {

#define HR_MS(col) "coalesce((extract(epoch from " col ") * 1000)::bigint, 0)"

// Column order matches delivery_from_row().
constexpr const char* kDeliveryColumns =
    "delivery_key, kind, source, event_id, destination, url, state, attempts, "
    "coalesce(lease_owner, ''), " HR_MS("lease_until") ", " HR_MS("first_seen_at") ", "
    HR_MS("first_attempt_at") ", " HR_MS("last_attempt_at") ", " HR_MS("completed_at") ", "
    "coalesce(last_status, 0), coalesce(last_error, ''), origin_topic";

DeliveryRow delivery_from_row(const pqxx::row& r) {
  DeliveryRow d;
  d.key = r[0].as<std::string>();
  d.kind = r[1].as<std::string>();
  d.source = r[2].as<std::string>();
  d.event_id = r[3].as<std::string>();
  d.destination = r[4].as<std::string>();
  d.url = r[5].as<std::string>();
  d.state = r[6].as<std::string>();
  d.attempts = r[7].as<int>();
  d.lease_owner = r[8].as<std::string>();
  d.lease_until_ms = r[9].as<int64_t>();
  d.first_seen_ms = r[10].as<int64_t>();
  d.first_attempt_ms = r[11].as<int64_t>();
  d.last_attempt_ms = r[12].as<int64_t>();
  d.completed_ms = r[13].as<int64_t>();
  d.last_status = r[14].as<int>();
  d.last_error = r[15].as<std::string>();
  d.origin_topic = r[16].as<std::string>();
  return d;
}

std::vector<DeliveryRow> deliveries_from(const pqxx::result& rows) {
  std::vector<DeliveryRow> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(delivery_from_row(r));
  return out;
}

bool is_state(const std::string& s) {
  static const std::array<const char*, 4> kStates = {"in_flight", "retrying", "succeeded", "dead"};
  for (const char* k : kStates) {
    if (s == k) return true;
  }
  return false;
}

}  // namespace

DeliveryQueries::DeliveryQueries(std::string url) : pg_(std::move(url)) {}

Result<std::vector<DeliveryRow>> DeliveryQueries::dlq_list(const DlqFilter& f) {
  if (!f.status.empty() && !is_state(f.status)) {
    return fail("bad_filter", "status: must be in_flight, retrying, succeeded or dead");
  }
  if (f.limit < 1 || f.limit > 10000) return fail("bad_filter", "limit: must be 1..10000");
  // $1 is the status; the rest filter and order either table the same way.
  const std::string order = " ORDER BY last_attempt_at DESC NULLS LAST, delivery_key";
  const std::string filters =
      " AND ($2::text = '' OR source = $2::text)"
      " AND ($3::text = '' OR destination = $3::text)"
      " AND ($4::bigint = 0 OR last_attempt_at >= to_timestamp($4 / 1000.0))"
      " AND ($5::bigint = 0 OR last_attempt_at < to_timestamp($5 / 1000.0))" + order;
  // Dead letters are found through their own table and its index (migrations/0004); other
  // states, which the hot path keeps unindexed, scan deliveries.
  const std::string sql =
      f.status == "dead"
          ? std::string("SELECT ") + kDeliveryColumns +
                " FROM deliveries WHERE state = $1::text AND delivery_key IN ("
                " SELECT delivery_key FROM dead_letters WHERE true" + filters + " LIMIT $6::int)" +
                order
          : std::string("SELECT ") + kDeliveryColumns +
                " FROM deliveries WHERE ($1::text = '' OR state = $1::text)" + filters +
                " LIMIT $6::int";
  return pg_.run("dlq_list", [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return deliveries_from(
        tx.exec_params(sql, f.status, f.source, f.destination, f.since_ms, f.until_ms, f.limit));
  });
}

Result<DeliveryDetail> DeliveryQueries::delivery_show(const std::string& key) {
  return pg_.run("delivery_show", [&](pqxx::connection& c) -> Result<DeliveryDetail> {
    pqxx::read_transaction tx(c);  // one snapshot for the delivery and its history
    auto rows = tx.exec_params(
        std::string("SELECT ") + kDeliveryColumns + " FROM deliveries WHERE delivery_key = $1",
        key);
    if (rows.empty()) return fail("not_found", "no delivery with key " + key);
    DeliveryDetail out;
    out.delivery = delivery_from_row(rows[0]);
    for (const auto& r : tx.exec_params(
             "SELECT attempt, " HR_MS("started_at") ", duration_ms, coalesce(http_status, 0),"
                                                    " outcome, error, worker_id FROM "
                                                    "delivery_attempts WHERE delivery_key = $1"
                                                    " ORDER BY started_at, attempt",
             key)) {
      out.attempts.push_back(AttemptRow{r[0].as<int>(), r[1].as<int64_t>(), r[2].as<int>(),
                                        r[3].as<int>(), r[4].as<std::string>(),
                                        r[5].as<std::string>(), r[6].as<std::string>()});
    }
    for (const auto& r : tx.exec_params(
             "SELECT id, replayed_by, " HR_MS("replayed_at") ", reason FROM dlq_replays"
                                                             " WHERE delivery_key = $1 ORDER BY id",
             key)) {
      out.replays.push_back(ReplayRow{r[0].as<int64_t>(), r[1].as<std::string>(),
                                      r[2].as<int64_t>(), r[3].as<std::string>()});
    }
    tx.commit();
    return out;
  });
}

Result<EventDetail> DeliveryQueries::event_show(const std::string& source,
                                                const std::string& event_id) {
  return pg_.run("event_show", [&](pqxx::connection& c) -> Result<EventDetail> {
    pqxx::read_transaction tx(c);
    EventDetail out;
    auto inbound = tx.exec_params(
        "SELECT source, event_id, topic, \"partition\", \"offset\", " HR_MS("received_at") ", "
        HR_MS("first_seen_at") ", body_sha256 FROM inbound_events"
        " WHERE source = $1 AND event_id = $2",
        source, event_id);
    if (!inbound.empty()) {
      const auto& r = inbound[0];
      out.inbound =
          InboundEventRow{r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(),
                          r[3].as<int>(),         r[4].as<int64_t>(),     r[5].as<int64_t>(),
                          r[6].as<int64_t>(),     r[7].as<std::string>()};
    }
    out.deliveries = deliveries_from(tx.exec_params(
        std::string("SELECT ") + kDeliveryColumns +
            " FROM deliveries WHERE source = $1 AND event_id = $2 ORDER BY destination",
        source, event_id));
    tx.commit();
    if (!out.inbound && out.deliveries.empty()) {
      return fail("not_found", "no event " + source + "/" + event_id);
    }
    return out;
  });
}

Result<DeliveryRow> DeliveryQueries::mark_replayed(const std::string& key, const std::string& who,
                                                   const std::string& reason) {
  return pg_.run("mark_replayed", [&](pqxx::connection& c) -> Result<DeliveryRow> {
    pqxx::work tx(c);
    // The state condition makes concurrent replays of one delivery succeed exactly once.
    auto rows =
        tx.exec_params(std::string("UPDATE deliveries SET state = 'retrying', lease_owner = NULL,"
                                   " lease_until = NULL, lease_token = NULL, completed_at = NULL,"
                                   " updated_at = now()"
                                   " WHERE delivery_key = $1 AND state = 'dead' RETURNING ") +
                           kDeliveryColumns,
                       key);
    if (rows.empty()) {
      auto state = tx.exec_params("SELECT state FROM deliveries WHERE delivery_key = $1", key);
      if (state.empty()) return fail("not_found", "no delivery with key " + key);
      return fail("not_replayable",
                  key + " is " + state[0][0].as<std::string>() + ", only dead deliveries replay");
    }
    DeliveryRow d = delivery_from_row(rows[0]);
    tx.exec_params(
        "INSERT INTO dlq_replays (delivery_key, replayed_by, reason) VALUES ($1, $2, $3)", key, who,
        reason);
    tx.exec_params(
        "INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms,"
        " outcome, error, worker_id) VALUES ($1, $2, now(), 0, 'replayed', $3, $4)",
        key, d.attempts, reason, "operator:" + who);
    tx.commit();
    return d;
  });
}

// The maintenance functions from the migrations: one int argument, one number back.
template <class T>
Result<T> DeliveryQueries::call_maintenance(const char* what, const char* sql, int arg) {
  return pg_.run(what, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    return tx.exec_params1(sql, arg)[0].as<T>();
  });
}

Result<int> DeliveryQueries::ensure_attempt_partitions(int days_ahead) {
  return call_maintenance<int>("ensure_attempt_partitions",
                               "SELECT hookrelay_ensure_attempt_partitions($1)", days_ahead);
}

Result<int> DeliveryQueries::drop_attempt_partitions(int older_than_days) {
  return call_maintenance<int>(
      "drop_attempt_partitions",
      "SELECT hookrelay_drop_attempt_partitions(make_interval(days => $1))", older_than_days);
}

Result<int64_t> DeliveryQueries::delete_inbound_events(int older_than_days) {
  return call_maintenance<int64_t>(
      "delete_inbound_events",
      "SELECT hookrelay_delete_inbound_events(make_interval(days => $1))", older_than_days);
}

}  // namespace hookrelay
