-- 0001_init: deliveries (idempotency + state), the per-attempt audit trail, inbound event dedupe,
-- and the audit of operator replays. schema_migrations is created by the migrator itself, since
-- it must exist before any file can be recorded as applied.
--
-- All times are timestamptz; all keys are text so callers choose their own formats.

CREATE TABLE deliveries (
  delivery_key     text PRIMARY KEY,
  kind             text NOT NULL CHECK (kind IN ('webhook', 'call')),
  source           text NOT NULL,
  event_id         text NOT NULL,
  destination      text NOT NULL,           -- route name, or 'call'
  url              text NOT NULL,
  state            text NOT NULL CHECK (state IN ('in_flight', 'retrying', 'succeeded', 'dead')),
  attempts         int NOT NULL DEFAULT 0,
  lease_owner      text,
  lease_until      timestamptz,
  first_seen_at    timestamptz NOT NULL DEFAULT now(),
  first_attempt_at timestamptz,
  last_attempt_at  timestamptz,
  completed_at     timestamptz,
  last_status      int,
  last_error       text,
  origin_topic     text NOT NULL DEFAULT '',
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- `dlq list` filters by state first, then source/destination, newest last attempt first.
CREATE INDEX deliveries_state_last_attempt_idx ON deliveries (state, last_attempt_at DESC);
CREATE INDEX deliveries_source_state_idx ON deliveries (source, state, last_attempt_at DESC);
CREATE INDEX deliveries_destination_state_idx ON deliveries (destination, state, last_attempt_at DESC);
-- `event show` lists every delivery of one event.
CREATE INDEX deliveries_event_idx ON deliveries (source, event_id);

-- One row per attempt. No primary key: a partitioned table's unique keys must contain the
-- partition key, and (delivery_key, attempt) alone is what readers look up.
CREATE TABLE delivery_attempts (
  delivery_key text NOT NULL,
  attempt      int NOT NULL,
  started_at   timestamptz NOT NULL,
  duration_ms  int NOT NULL DEFAULT 0,
  http_status  int,
  outcome      text NOT NULL CHECK (outcome IN
                 ('succeeded', 'retryable', 'permanent', 'duplicate_success', 'replayed')),
  error        text NOT NULL DEFAULT '',
  worker_id    text NOT NULL DEFAULT ''
) PARTITION BY RANGE (started_at);

-- Catches rows outside every daily partition (clock skew, maintenance not run) so inserts
-- never fail for lack of a partition.
CREATE TABLE delivery_attempts_default PARTITION OF delivery_attempts DEFAULT;

CREATE INDEX delivery_attempts_key_idx ON delivery_attempts (delivery_key, attempt);

-- Creates the daily partitions delivery_attempts_pYYYYMMDD (UTC days) from today through
-- today + days_ahead. Rows already in the default partition for a new day are moved into it,
-- because attaching a range that the default partition holds rows for is an error.
-- Returns how many partitions were created. Safe to run repeatedly.
CREATE FUNCTION hookrelay_ensure_attempt_partitions(days_ahead int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  day date;
  part text;
  lo timestamptz;
  hi timestamptz;
  created int := 0;
BEGIN
  FOR i IN 0 .. greatest(days_ahead, 0) LOOP
    day := today + i;
    part := 'delivery_attempts_p' || to_char(day, 'YYYYMMDD');
    CONTINUE WHEN to_regclass(part) IS NOT NULL;
    lo := day::timestamp AT TIME ZONE 'UTC';
    hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
    CREATE TEMP TABLE hookrelay_moving (LIKE delivery_attempts) ON COMMIT DROP;
    WITH moved AS (
      DELETE FROM delivery_attempts_default WHERE started_at >= lo AND started_at < hi RETURNING *
    )
    INSERT INTO hookrelay_moving SELECT * FROM moved;
    EXECUTE format('CREATE TABLE %I PARTITION OF delivery_attempts FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    INSERT INTO delivery_attempts SELECT * FROM hookrelay_moving;
    DROP TABLE hookrelay_moving;
    created := created + 1;
  END LOOP;
  RETURN created;
END;
$$;

-- Retention: drops the daily partitions whose whole day ended before now() - older_than, and
-- deletes rows that old from the default partition. Returns how many partitions were dropped.
CREATE FUNCTION hookrelay_drop_attempt_partitions(older_than interval) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  cutoff timestamptz := now() - older_than;
  part record;
  dropped int := 0;
BEGIN
  FOR part IN
    SELECT c.relname
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'delivery_attempts'::regclass
      AND c.relname ~ '^delivery_attempts_p[0-9]{8}$'
  LOOP
    IF (to_date(substr(part.relname, 20), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
    THEN
      EXECUTE format('DROP TABLE %I', part.relname);
      dropped := dropped + 1;
    END IF;
  END LOOP;
  DELETE FROM delivery_attempts_default WHERE started_at < cutoff;
  RETURN dropped;
END;
$$;

SELECT hookrelay_ensure_attempt_partitions(7);

-- First sighting of each inbound event (source, event_id): a redelivered or re-sent event is
-- recognised here. Kafka coordinates say where the first copy lives.
CREATE TABLE inbound_events (
  source        text NOT NULL,
  event_id      text NOT NULL,
  received_at   timestamptz NOT NULL,
  topic         text NOT NULL,
  "partition"   int NOT NULL,
  "offset"      bigint NOT NULL,
  body_sha256   text NOT NULL DEFAULT '',
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source, event_id)
);
CREATE INDEX inbound_events_received_idx ON inbound_events (received_at);

-- Who replayed what from the DLQ, and why.
CREATE TABLE dlq_replays (
  id           bigserial PRIMARY KEY,
  delivery_key text NOT NULL REFERENCES deliveries (delivery_key),
  replayed_by  text NOT NULL,
  replayed_at  timestamptz NOT NULL DEFAULT now(),
  reason       text NOT NULL DEFAULT ''
);
CREATE INDEX dlq_replays_key_idx ON dlq_replays (delivery_key);
