-- 0010_route_lifecycle: routes that are suspended (by a 410 Gone, by their suspend_after bound,
-- or by an operator) and the deliveries parked while they are.
--
-- One row per route that ever had an attempt or an operator action; a route with no row is
-- active with no failures. Workers add their failure counts to it every second or so and read
-- back which routes are suspended (worker/route_sync.h), so every worker sees a suspension.
CREATE TABLE route_states (
  source         text NOT NULL,
  route          text NOT NULL,
  state          text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended')),
  reason         text NOT NULL DEFAULT '',
  failure_streak int NOT NULL DEFAULT 0,     -- failed attempts since the last success
  failing_since  timestamptz,                -- first failure of that streak; NULL when 0
  suspended_at   timestamptz,
  suspended_by   text NOT NULL DEFAULT '',   -- a worker id, or operator:<who>
  resumed_at     timestamptz,
  resumed_by     text NOT NULL DEFAULT '',
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, route)
);

-- A parked delivery: not attempted, not dead, its message kept in hookrelay.parked until the
-- route is resumed and the delivery released into the retry flow.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_state_check
  CHECK (state IN ('in_flight', 'retrying', 'succeeded', 'dead', 'parked'));

-- The audit row of a delivery parked without an attempt (its route was suspended when it came).
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check CHECK (outcome IN
  ('succeeded', 'retryable', 'permanent', 'duplicate_success', 'replayed', 'resent', 'parked'));

-- The parked deliveries of each route in the order they first arrived: what a resume releases.
-- Kept by a trigger, as dead_letters is (0004): an index on deliveries naming `state` would
-- make every record update a non-HOT one.
CREATE TABLE parked_deliveries (
  delivery_key  text PRIMARY KEY REFERENCES deliveries (delivery_key) ON DELETE CASCADE,
  source        text NOT NULL,
  destination   text NOT NULL,
  first_seen_at timestamptz NOT NULL,
  parked_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_deliveries_route_idx
  ON parked_deliveries (source, destination, first_seen_at, delivery_key);

CREATE FUNCTION hookrelay_track_parked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'parked' THEN
    INSERT INTO parked_deliveries (delivery_key, source, destination, first_seen_at)
    VALUES (NEW.delivery_key, NEW.source, NEW.destination, NEW.first_seen_at)
    ON CONFLICT (delivery_key) DO NOTHING;
  ELSE
    DELETE FROM parked_deliveries WHERE delivery_key = OLD.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_parked
  AFTER UPDATE ON deliveries FOR EACH ROW
  WHEN (OLD.state = 'parked' OR NEW.state = 'parked')
  EXECUTE FUNCTION hookrelay_track_parked();

-- A release is a replay whose items are the parked deliveries of one route, produced in the
-- order they arrived: `position` is that order, and `from_state` the state a key must be in.
ALTER TABLE replays ADD COLUMN from_state text NOT NULL DEFAULT 'dead'
  CHECK (from_state IN ('dead', 'parked'));
ALTER TABLE replay_items ADD COLUMN position bigint NOT NULL DEFAULT 0;
