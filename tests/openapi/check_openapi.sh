#!/usr/bin/env bash
# The admin API's contract in the suite: docs/openapi.yaml validates as OpenAPI 3.1
# (openapi-spec-validator), then schemathesis runs its generated cases against a live
# hookrelay-admin on a scratch database with a few deliveries: no 5xx, no response outside the
# schema (status code, content type, body). Both tools come from PyPI into a venv under
# ~/.cache/hookrelay, made on first use.
#
#   tests/openapi/check_openapi.sh BUILD_DIR [MAX_EXAMPLES]
#   tests/openapi/check_openapi.sh --setup-only     (only make the venv: scripts/dev test does
#                                                    it while the build compiles)
# Needs HOOKRELAY_TEST_DATABASE_URL (scripts/dev pg).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${HOOKRELAY_OPENAPI_VENV:-$HOME/.cache/hookrelay/openapi-venv}

# schemathesis 3.x uses hypothesis internals that later hypothesis releases removed ("'many'
# object has no attribute 'more'"): pinned. The marker file names the pin set installed.
if [ ! -f "$VENV/.hookrelay-pins-1" ]; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'openapi-spec-validator>=0.7,<0.8' 'schemathesis>=3.30,<4' 'hypothesis<6.120'
  touch "$VENV/.hookrelay-pins-1"
fi
[ "${1:-}" != --setup-only ] || exit 0

BUILD=${1:?usage: check_openapi.sh BUILD_DIR [MAX_EXAMPLES]}
EXAMPLES=${2:-40}
DB_URL=${HOOKRELAY_TEST_DATABASE_URL:?set HOOKRELAY_TEST_DATABASE_URL (scripts/dev pg)}
TOKEN=openapi-check-token-0123456789
"$VENV/bin/openapi-spec-validator" "$ROOT/docs/openapi.yaml"

db="hr_openapi_$$"
work=$(mktemp -d)
admin_pid=""
cleanup() {
  [ -n "$admin_pid" ] && kill "$admin_pid" 2>/dev/null && wait "$admin_pid" 2>/dev/null || true
  psql -X -q "$DB_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -X -q -v ON_ERROR_STOP=1 "$DB_URL" -c "CREATE DATABASE $db" >/dev/null
url="${DB_URL%/*}/$db"
"$BUILD/cli/hookrelay" migrate --database-url "$url" --dir "$ROOT/migrations" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 "$url" >/dev/null <<'SQL'
INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state, attempts,
    first_attempt_at, last_attempt_at, completed_at, last_status, last_error)
SELECT 'wh:acme:evt-' || i || ':a', 'webhook', 'acme', 'evt-' || i, 'a', 'http://127.0.0.1:9/a',
       CASE WHEN i % 3 = 0 THEN 'dead' ELSE 'succeeded' END, 1, now(), now(), now(),
       CASE WHEN i % 3 = 0 THEN 410 ELSE 200 END, CASE WHEN i % 3 = 0 THEN 'HTTP 410' END
FROM generate_series(1, 30) i;
INSERT INTO deliveries (delivery_key, kind, source, event_id, destination, url, state)
VALUES ('call:idem-1', 'call', 'svc', 'call_1', 'call', 'http://127.0.0.1:9/c', 'in_flight');
INSERT INTO delivery_attempts (delivery_key, attempt, started_at, http_status, outcome, worker_id)
SELECT delivery_key, 1, now(), last_status, CASE WHEN state = 'dead' THEN 'permanent' ELSE 'succeeded' END, 'w'
FROM deliveries WHERE kind = 'webhook';
INSERT INTO inbound_events (source, event_id, received_at, topic, "partition", "offset")
SELECT 'acme', 'evt-' || i, now(), 'hookrelay.webhooks', 0, i FROM generate_series(1, 30) i;
SQL

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/admin.yaml" <<CONF
kafka: { bootstrap_servers: "127.0.0.1:1" }
postgres: { url: "$url" }
admin: { listen: "127.0.0.1:$port", tokens: ["$TOKEN"] }
log_level: warn
CONF
"$BUILD/admin/hookrelay-admin" --config "$work/admin.yaml" >"$work/admin.log" 2>&1 &
admin_pid=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
  sleep 0.1
done

# Replays are stored (and run in the background against a Kafka that is not there: their
# items end as failed or missing, which the schema allows).
"$VENV/bin/st" run "http://127.0.0.1:$port/openapi.yaml" \
  --base-url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer $TOKEN" --experimental=openapi-3.1 \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --hypothesis-max-examples "$EXAMPLES" --hypothesis-derandomize \
  --generation-allow-x00 false --exitfirst --no-color \
  || { echo "--- hookrelay-admin log"; tail -50 "$work/admin.log"; exit 1; }
kill -0 "$admin_pid" || { echo "hookrelay-admin died"; tail -50 "$work/admin.log"; exit 1; }
