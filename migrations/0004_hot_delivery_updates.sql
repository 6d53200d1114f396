-- 0004_hot_delivery_updates: every delivery writes a deliveries row twice (the claim inserts it,
-- the record updates it). An update that changes no indexed column and finds room on its page is
-- a heap-only tuple (HOT) update: no index entry at all. deliveries_dead_idx covered `state` and
-- `last_attempt_at`, which every record changes, so every update added a primary-key and an
-- event index entry too. Dead letters now live in their own small table, kept by a trigger that
-- fires only on rows entering or leaving 'dead', and deliveries pages keep room for the update.

CREATE TABLE dead_letters (
  delivery_key    text PRIMARY KEY REFERENCES deliveries (delivery_key) ON DELETE CASCADE,
  source          text NOT NULL,
  destination     text NOT NULL,
  last_attempt_at timestamptz,
  dead_at         timestamptz NOT NULL DEFAULT now()
);
-- `hookrelay dlq list`: newest last attempt first.
CREATE INDEX dead_letters_last_attempt_idx
  ON dead_letters (last_attempt_at DESC NULLS LAST, delivery_key);

INSERT INTO dead_letters (delivery_key, source, destination, last_attempt_at, dead_at)
SELECT delivery_key, source, destination, last_attempt_at, coalesce(completed_at, updated_at)
FROM deliveries WHERE state = 'dead';

CREATE FUNCTION hookrelay_track_dead_letter() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'dead' THEN
    INSERT INTO dead_letters (delivery_key, source, destination, last_attempt_at)
    VALUES (NEW.delivery_key, NEW.source, NEW.destination, NEW.last_attempt_at)
    ON CONFLICT (delivery_key) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at;
  ELSE
    DELETE FROM dead_letters WHERE delivery_key = OLD.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

-- The WHEN clause is evaluated in the executor for each updated row; the function runs only for
-- the few rows it selects. Deliveries are inserted 'in_flight' and never deleted by hookrelay.
CREATE TRIGGER deliveries_dead_letters
  AFTER UPDATE ON deliveries FOR EACH ROW
  WHEN (OLD.state = 'dead' OR NEW.state = 'dead')
  EXECUTE FUNCTION hookrelay_track_dead_letter();

DROP INDEX deliveries_dead_idx;

-- New pages are filled to half, so the record update of every claim on a page fits beside it
-- (measured: 100% HOT updates at 50, 58% at 70, under bench/worker).
ALTER TABLE deliveries SET (fillfactor = 50);

-- Retention deletes inbound_events by received_at, which rises with insertion order: a BRIN
-- index serves that range at a fraction of a btree's cost per insert.
DROP INDEX inbound_events_received_idx;
CREATE INDEX inbound_events_received_brin ON inbound_events USING brin (received_at);
