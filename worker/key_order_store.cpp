#include "worker/key_order_store.h"

#include <pqxx/pqxx>
#include <utility>

#include "shared/signing/crypto.h"
#include "shared/store/key_hash_sql.h"
#include "shared/store/ordered_waiting_sql.h"

namespace hookrelay {

namespace {

// A row of ordered_waiting as `SELECT id, delivery_key, topic, encode(body, 'hex')` read it, with
// its headers.
WaitingDelivery read_waiting_row(pqxx::work& tx, const OrderKey& key, const pqxx::row& row) {
  WaitingDelivery w;
  w.id = row[0].as<int64_t>();
  w.key = key;
  w.delivery_key = row[1].as<std::string>();
  w.topic = row[2].as<std::string>();
  w.body = hex_decode(row[3].as<std::string>()).value_or("");
  // The exact bytes (header_bytes) where the row has them; the text a row written without them
  // holds (bytes that were not UTF-8 replaced) otherwise.
  std::vector<std::string> items;
  for (const auto& h : tx.exec_params(sql::kWaitingHeaders, w.id)) {
    if (!h[0].is_null()) {
      items.push_back(hex_decode(h[0].as<std::string>()).value_or(""));
    } else {
      items.push_back(h[1].is_null() ? std::string() : h[1].as<std::string>());
    }
  }
  for (std::size_t i = 0; i + 1 < items.size(); i += 2)
    w.headers.push_back({std::move(items[i]), std::move(items[i + 1])});
  return w;
}

}  // namespace

PostgresKeyOrderStore::PostgresKeyOrderStore(std::string url) : db_(std::move(url)) {}

namespace {

// Appends `w` behind its key and gives back the lease `lease_token` has on it (enqueue()).
void append_waiting(pqxx::work& tx, const WaitingDelivery& w, int64_t lease_token) {
  tx.exec_params(sql::kAppendWaiting, w.key.source, w.key.route, w.key.key, w.delivery_key, w.topic,
                 sql::waiting_headers(w.headers), hex_encode(w.body),
                 sql::waiting_header_bytes(w.headers));
  // The lease is given back: released, the delivery is claimed again like any retry.
  tx.exec_params(
      "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, lease_token = NULL"
      " WHERE " HR_KEY_IS("delivery_key", "$1::text") " AND lease_token = $2",
      w.delivery_key, lease_token);
}

}  // namespace

Result<std::string> PostgresKeyOrderStore::hold(const OrderKey& key, const std::string& head,
                                                const WaitingDelivery& otherwise,
                                                int64_t lease_token) {
  return db_.run("ordered key hold", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::work tx(c);
    auto r = tx.exec_params(
        "INSERT INTO ordered_keys (source, route, ordering_key, head_key) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (source, route, ordering_key) DO UPDATE SET"
        "   head_key = CASE WHEN ordered_keys.head_key = '' THEN EXCLUDED.head_key"
        "                   ELSE ordered_keys.head_key END,"
        "   updated_at = CASE WHEN ordered_keys.head_key = '' THEN now()"
        "                     ELSE ordered_keys.updated_at END"
        " RETURNING head_key",
        key.source, key.route, key.key, head);
    const std::string now_head = r.empty() ? head : r[0][0].as<std::string>();
    if (now_head != head) append_waiting(tx, otherwise, lease_token);
    tx.commit();
    return now_head;
  });
}

Result<bool> PostgresKeyOrderStore::enqueue(const WaitingDelivery& w, int64_t lease_token) {
  return db_.run("ordered key enqueue", [&](pqxx::connection& c) -> Result<bool> {
    pqxx::work tx(c);
    // DO UPDATE, not DO NOTHING: the key's row is locked whether it was there or not, so an
    // advance() of the key under way either sees this delivery or has let the key go first
    // (the row inserted here then holds it again). DO NOTHING took no lock, and a delivery
    // appended while the key was let go was left behind a key no one holds.
    auto head = tx.exec_params(
        "INSERT INTO ordered_keys (source, route, ordering_key, head_key) VALUES ($1, $2, $3, '')"
        " ON CONFLICT (source, route, ordering_key) DO UPDATE SET head_key = ordered_keys.head_key"
        " RETURNING head_key",
        w.key.source, w.key.route, w.key.key);
    if (!head.empty() && head[0][0].as<std::string>() == w.delivery_key) {
      tx.commit();
      return false;  // the key's head itself: it is attempted, not set to wait
    }
    append_waiting(tx, w, lease_token);
    tx.commit();
    return true;
  });
}

Result<KeyAdvance> PostgresKeyOrderStore::advance(const OrderKey& key, const std::string& head) {
  return db_.run("ordered key advance", [&](pqxx::connection& c) -> Result<KeyAdvance> {
    pqxx::work tx(c);
    auto held = tx.exec_params(
        "SELECT head_key FROM ordered_keys WHERE source = $1 AND route = $2"
        " AND ordering_key = $3 FOR UPDATE",
        key.source, key.route, key.key);
    if (held.empty()) {
      tx.commit();
      return KeyAdvance{};
    }
    if (auto now_head = held[0][0].as<std::string>(); now_head != head) {
      tx.commit();
      return KeyAdvance{std::nullopt, std::move(now_head)};
    }
    // The head's own row, when it was a released delivery whose publish was not yet
    // confirmed: the head finished, so it was published; it is not released again.
    tx.exec_params(
        "DELETE FROM ordered_waiting WHERE source = $1 AND route = $2 AND ordering_key = $3"
        " AND delivery_key = $4",
        key.source, key.route, key.key, head);
    auto next = tx.exec_params(
        "SELECT id, delivery_key, topic, encode(body, 'hex') FROM ordered_waiting"
        " WHERE source = $1 AND route = $2 AND ordering_key = $3 ORDER BY id LIMIT 1",
        key.source, key.route, key.key);
    if (next.empty()) {
      tx.exec_params(
          "DELETE FROM ordered_keys WHERE source = $1 AND route = $2 AND ordering_key = $3",
          key.source, key.route, key.key);
      tx.commit();
      return KeyAdvance{};
    }
    WaitingDelivery w = read_waiting_row(tx, key, next[0]);
    tx.exec_params(
        "UPDATE ordered_keys SET head_key = $4, updated_at = now() WHERE source = $1"
        " AND route = $2 AND ordering_key = $3",
        key.source, key.route, key.key, w.delivery_key);
    tx.commit();
    return KeyAdvance{std::move(w), std::nullopt};
  });
}

Result<void> PostgresKeyOrderStore::released(int64_t id) {
  return db_.run("ordered key released", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec_params("DELETE FROM ordered_waiting WHERE id = $1", id);
    tx.commit();
  });
}

Result<std::vector<HeldKey>> PostgresKeyOrderStore::held(int64_t done_for_ms) {
  return db_.run("ordered keys", [&](pqxx::connection& c) {
    pqxx::work tx(c);
    // A head counts as done when it succeeded or died a while ago: the worker that finished it
    // is gone, and the next delivery is released by whoever sees it here. A head whose own
    // waiting row is still there a while after it became the head was made the head by a worker
    // that stopped before confirming its publish, perhaps before publishing it: its row (the
    // first, should an older worker have left two) is published again by whoever sees it here.
    auto rows = tx.exec_params(
        "SELECT k.source, k.route, k.ordering_key, k.head_key,"
        "  (k.head_key = ''"
        "   OR EXISTS (SELECT 1 FROM deliveries d WHERE " HR_KEY_IS("d.delivery_key", "k.head_key")
        "              AND d.state IN ('succeeded', 'dead')"
        "              AND d.completed_at < now() - make_interval(secs => $1 / 1000.0))),"
        "  (SELECT count(*) FROM ordered_waiting w WHERE w.source = k.source"
        "   AND w.route = k.route AND w.ordering_key = k.ordering_key),"
        "  CASE WHEN k.updated_at < now() - make_interval(secs => $1 / 1000.0) THEN"
        "    (SELECT min(w.id) FROM ordered_waiting w WHERE w.delivery_key = k.head_key"
        "     AND w.source = k.source AND w.route = k.route AND w.ordering_key = k.ordering_key)"
        "  END"
        " FROM ordered_keys k",
        done_for_ms);
    std::vector<HeldKey> out;
    out.reserve(rows.size());
    for (const auto& r : rows) {
      HeldKey h;
      h.key = {r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>()};
      h.head = r[3].as<std::string>();
      h.head_done = r[4].as<bool>();
      h.waiting = r[5].as<int64_t>();
      if (!h.head_done && !r[6].is_null()) {
        auto row = tx.exec_params(
            "SELECT id, delivery_key, topic, encode(body, 'hex') FROM ordered_waiting WHERE id = "
            "$1",
            r[6].as<int64_t>());
        if (!row.empty()) h.unreleased = read_waiting_row(tx, h.key, row[0]);
      }
      out.push_back(std::move(h));
    }
    tx.commit();
    return out;
  });
}

}  // namespace hookrelay
