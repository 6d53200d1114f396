#!/usr/bin/env bash
# Scripted check that the embedded stack's default Kafka is durable across `scripts/dev down` /
# `scripts/dev up`: every accepted webhook is still in hookrelay.webhooks afterwards, and the
# worker's committed offsets are kept, so nothing is delivered a second time.
#
#   scripts/dev-kafka-durability.sh [--count N] [UP-ARGS...]     (e.g. --no-build)
#
# It uses the stack in .dev/ as it is (it wipes nothing): it starts it if needed, posts N signed
# webhooks whose bodies carry a fresh run id, waits until the worker delivered all of them to the
# demo receiver, runs `down` then `up`, and checks, for that run id only:
#   - hookrelay.webhooks read from offset 0 holds exactly N of them,
#   - the hookrelay-workers group's committed offsets cover the whole topic (lag 0),
#   - after the restart the worker handled none of them again (its delivery and idempotent-skip
#     counters stay 0, so not even a re-read masked by Postgres), the demo receiver got none,
#     Postgres holds exactly one attempt and one succeeded delivery per webhook, and the worker
#     reported no vanished offsets.
# Leaves the stack running. Exit 0 when every check passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${HOOKRELAY_BUILD_DIR:-$ROOT/build}"
STATE="${HOOKRELAY_STATE_DIR:-$ROOT/.dev}"
PG_URL="postgresql://postgres@127.0.0.1:${HOOKRELAY_PG_PORT:-55432}/hookrelay"
COUNT=50
UP_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --devbroker) echo "error: the check is about the durable default, not the devbroker" >&2; exit 2 ;;
    *) UP_ARGS+=("$1"); shift ;;
  esac
done

say() { printf '[durability] %s\n' "$*"; }
FAILED=0
check() {  # description, expected, actual
  if [ "$2" = "$3" ]; then say "ok   $1: $3"; else say "FAIL $1: expected $2, got $3"; FAILED=1; fi
}

up() {  # label
  local t0=$SECONDS
  if ! "$ROOT/scripts/dev" up ${UP_ARGS[@]+"${UP_ARGS[@]}"} >"$STATE/durability-up.log" 2>&1; then
    tail -n 60 "$STATE/durability-up.log"
    say "FAIL scripts/dev up ($1)"; exit 1
  fi
  [ "$(cat "$STATE/kafka-mode")" = kafka ] || { say "FAIL the stack does not run on Kafka"; exit 1; }
  say "scripts/dev up ($1): $((SECONDS - t0)) s, kafka $(cat "$STATE/bootstrap")"
}

sql() { psql "$PG_URL" -qtAc "$1"; }

kafka_tool() { "$ROOT/scripts/kafka" tool --dir "$STATE/kafka" "$@"; }

mkdir -p "$STATE"
up "first"
BOOTSTRAP=$(cat "$STATE/bootstrap")
RUN="durable-$(date +%Y%m%d%H%M%S)-$$"
CONFIG="$STATE/config.yaml"

say "posting $COUNT signed webhooks, run id $RUN"
accepted=0
body="$STATE/durability-body.json"
for i in $(seq 1 "$COUNT"); do
  printf '{"action":"opened","durability_check":"%s","n":%d}' "$RUN" "$i" >"$body"
  if "$BUILD/cli/hookrelay" send --config "$CONFIG" --source github --event-id "$RUN-$i" "$body" \
       >/dev/null 2>&1; then
    accepted=$((accepted + 1))
  fi
done
check "webhooks answered 2xx" "$COUNT" "$accepted"

delivered_pg() {
  sql "SELECT count(*) FROM deliveries WHERE source = 'github' AND event_id LIKE '$RUN-%' AND state = 'succeeded'"
}
for _ in $(seq 1 120); do [ "$(delivered_pg)" -ge "$COUNT" ] && break; sleep 0.5; done
check "delivered before the restart (Postgres, succeeded)" "$COUNT" "$(delivered_pg)"
check "delivered before the restart (demo receiver log)" "$COUNT" \
  "$(grep -c "\"durability_check\":\"$RUN\"" "$STATE/demo-receiver.log" || true)"

t0=$SECONDS
"$ROOT/scripts/dev" down >/dev/null 2>&1
say "scripts/dev down: $((SECONDS - t0)) s"
if "$ROOT/scripts/kafka" status --dir "$STATE/kafka" >/dev/null 2>&1; then
  say "FAIL Kafka still runs after scripts/dev down"; FAILED=1
fi
check "Kafka shut down cleanly (data/.kafka_cleanshutdown written)" "yes" \
  "$([ -f "$STATE/kafka/node-1/data/.kafka_cleanshutdown" ] && echo yes || echo no)"

up "after down"
ready_at=$SECONDS

in_topic=$(kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" \
  --topic hookrelay.webhooks --from-beginning --timeout-ms 15000 2>/dev/null |
  grep -c "\"durability_check\":\"$RUN\"" || true)
check "messages of this run in hookrelay.webhooks (read from offset 0)" "$COUNT" "$in_topic"

lag=$(kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" \
  --describe --group hookrelay-workers 2>/dev/null |
  awk '$2 == "hookrelay.webhooks" { n++; if ($4 == "-") missing++; else { lag += $6; committed += $4 } }
       END { printf "%d partitions, %d without a committed offset, committed %d, lag %d", n, missing, committed, lag }')
say "hookrelay-workers on hookrelay.webhooks: $lag"
check "consumer lag on hookrelay.webhooks after the restart" "lag 0" "${lag##*, }"

# Give the restarted worker time to (wrongly) deliver again: it holds its partitions once ready.
while [ $((SECONDS - ready_at)) -lt 15 ]; do sleep 1; done
check "deliveries of this run after the restart (demo receiver log)" "0" \
  "$(grep -c "\"durability_check\":\"$RUN\"" "$STATE/demo-receiver.log" || true)"
check "attempts recorded for this run (Postgres, one each)" "$COUNT" \
  "$(sql "SELECT count(*) FROM delivery_attempts_all a JOIN deliveries d USING (delivery_key)
          WHERE d.source = 'github' AND d.event_id LIKE '$RUN-%'")"
check "succeeded deliveries of this run (Postgres)" "$COUNT" "$(delivered_pg)"
# Postgres would mask a re-read (the claim skips what succeeded): the restarted worker's own
# counters show it read none of them at all.
metric_sum() {  # metric name prefix
  curl -fsS "http://127.0.0.1:${HOOKRELAY_DEV_WORKER_PORT:-9100}/metrics" |
    awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'
}
check "restarted worker: deliveries handled (hookrelay_worker_deliveries_total)" "0" \
  "$(metric_sum hookrelay_worker_deliveries_total)"
check "restarted worker: idempotent skips (hookrelay_worker_idempotent_skips_total)" "0" \
  "$(metric_sum hookrelay_worker_idempotent_skips_total)"
check "worker offsets_vanished reports" "0" "$(grep -c 'offsets_vanished' "$STATE/worker.log" || true)"

if [ "$FAILED" = 0 ]; then say "PASS: $COUNT accepted webhooks kept across down/up and delivered once"; fi
exit "$FAILED"
