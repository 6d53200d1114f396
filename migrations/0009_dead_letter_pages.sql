-- 0009_dead_letter_pages: GET /v1/deliveries?state=dead pages dead deliveries newest first by
-- (first_seen_at, delivery_key). Through the first-seen indexes of 0006 that read every delivery
-- of the source or route until enough dead ones turned up: all of them when none did (648 ms for
-- a source of 200,000 deliveries, bench/admin). An index on deliveries that names `state` would
-- make every claim and record update a non-HOT one (see 0004): a column in a partial index's
-- predicate counts as indexed. dead_letters already holds exactly the dead deliveries, kept by
-- the trigger of 0004 that fires only on rows entering or leaving 'dead'; with first_seen_at
-- beside them it is paged in the same order. The worker's writes are unchanged: its updates
-- stay heap-only, and a delivery that dies writes one dead_letters row with four small index
-- entries instead of one.

ALTER TABLE dead_letters ADD COLUMN first_seen_at timestamptz;
UPDATE dead_letters dl SET first_seen_at = d.first_seen_at
FROM deliveries d WHERE d.delivery_key = dl.delivery_key;
ALTER TABLE dead_letters ALTER COLUMN first_seen_at SET NOT NULL;

CREATE INDEX dead_letters_first_seen_idx ON dead_letters (first_seen_at DESC, delivery_key DESC);
CREATE INDEX dead_letters_source_first_seen_idx
  ON dead_letters (source, first_seen_at DESC, delivery_key DESC);
CREATE INDEX dead_letters_destination_first_seen_idx
  ON dead_letters (destination, first_seen_at DESC, delivery_key DESC);

CREATE OR REPLACE FUNCTION hookrelay_track_dead_letter() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'dead' THEN
    INSERT INTO dead_letters (delivery_key, source, destination, last_attempt_at, first_seen_at)
    VALUES (NEW.delivery_key, NEW.source, NEW.destination, NEW.last_attempt_at, NEW.first_seen_at)
    ON CONFLICT (delivery_key) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at;
  ELSE
    DELETE FROM dead_letters WHERE delivery_key = OLD.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;
