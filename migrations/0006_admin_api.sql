-- 0006_admin_api: what the admin API reads and writes.
--
-- Listing deliveries pages by (first_seen_at, delivery_key), newest first, optionally for one
-- source or one route. first_seen_at, source, destination, kind and event_id are written once by
-- the claim's insert and never updated, so these indexes cost one entry per delivery and leave
-- the claim/record updates heap-only (see 0004).
CREATE INDEX deliveries_first_seen_idx ON deliveries (first_seen_at DESC, delivery_key DESC);
CREATE INDEX deliveries_source_first_seen_idx
  ON deliveries (source, first_seen_at DESC, delivery_key DESC);
CREATE INDEX deliveries_destination_first_seen_idx
  ON deliveries (destination, first_seen_at DESC, delivery_key DESC);
-- GET /v1/calls/{id}: a call's id is its hr-event-id; calls have no source to look up by.
CREATE INDEX deliveries_call_event_idx ON deliveries (event_id) WHERE kind = 'call';

-- A resend of a succeeded delivery: the replay sets resend_id, and the next claim of the key
-- takes the succeeded row once and clears it (worker/postgres_delivery_store.cpp). Not indexed:
-- updates stay heap-only.
ALTER TABLE deliveries ADD COLUMN resend_id bigint;

-- The audit row of a resend, beside 'replayed' for a dead delivery put back in the retry flow.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check CHECK (outcome IN
  ('succeeded', 'retryable', 'permanent', 'duplicate_success', 'replayed', 'resent'));

-- Replays requested through the admin API. The request is kept as sent; the keys it matched
-- are its items, each with its own progress, so a replay resumed after a restart never
-- produces a key twice.
CREATE TABLE replays (
  id           bigserial PRIMARY KEY,
  request      jsonb NOT NULL,
  requested_by text NOT NULL DEFAULT '',
  dry_run      boolean NOT NULL DEFAULT false,
  rate         double precision NOT NULL DEFAULT 0,   -- keys per second; 0 = unpaced
  state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished')),
  runner       text,                                  -- the admin process working on it
  runner_until timestamptz,                           -- its lease; another may take over after
  created_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);
CREATE INDEX replays_running_idx ON replays (id) WHERE state = 'running';

-- pending -> marked (the delivery was changed in Postgres, its message not yet acknowledged by
-- Kafka) -> a final outcome. A marked item found after a restart is produced again only if no
-- worker has picked its delivery up; the claim's exclusivity makes a second copy harmless.
CREATE TABLE replay_items (
  replay_id    bigint NOT NULL REFERENCES replays (id) ON DELETE CASCADE,
  delivery_key text NOT NULL,
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN
                 ('pending', 'marked', 'replayed', 'resent', 'would_replay', 'would_resend',
                  'skipped', 'missing', 'failed')),
  detail       text NOT NULL DEFAULT '',
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (replay_id, delivery_key)
);
