-- 0016_compact_delivery_rows: a narrower deliveries row. Each byte of the row is written about
-- twice per delivered event (the claim's version and the record's, both on a page filled to 48%
-- so the record's update stays heap-only), and most of the row repeated what its key or its route
-- already says: a webhook's key is 'wh:<source>:<event_id>:<route>', and its kind, source,
-- event_id and destination were columns too (56 bytes with a UUID event id); its url and origin
-- topic are the same for every delivery of the route (53 bytes for a short URL).
--
-- The rows are in delivery_rows now, and deliveries is a view over it with the columns and values
-- readers had: reads, and updates of the columns the table holds as they are (state, lease,
-- attempts, resend_id, ...), go through it unchanged; an INSERT through it is stored compactly by
-- a trigger. The worker's claim, record and release write delivery_rows directly.
--
-- - A webhook whose key is exactly 'wh:' || source || ':' || event_id || ':' || destination, with
--   no ':' in source or destination (so the key parses back to the same three), keeps only its key:
--   kind, source, event_id and destination are NULL in delivery_rows and read from the key
--   (hookrelay_delivery_source/_event_id/_destination). Any other row (a call, or a key built some
--   other way) keeps the four as they were.
-- - A webhook's url and origin topic are a row of delivery_targets (one per distinct pair, found
--   by a 16-byte hash of the pair and compared as text), named by target_id; a call's url is its
--   own, kept in the row with its origin topic, and target_id is NULL.
-- - The columns the claim writes once come first and those the record changes after them, so the
--   record's heap-only update logs a shorter changed middle (PostgreSQL logs the old version's
--   common prefix and suffix by length only).
--
-- The event-id hash index indexes the derived event id, so readers' event_id = $1 on the view
-- uses it. The rows are copied once into the new table (a table rewrite: every delivery read and
-- written once, with its indexes built after the copy).

-- The key's parts, for rows that keep only their key (kind IS NULL). Inlined SQL expressions.
CREATE FUNCTION hookrelay_delivery_source(key text, kind text, source text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN kind IS NULL THEN split_part(key, ':', 2) ELSE source END
$$;
CREATE FUNCTION hookrelay_delivery_destination(key text, kind text, destination text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN kind IS NULL THEN reverse(split_part(reverse(key), ':', 1)) ELSE destination END
$$;
CREATE FUNCTION hookrelay_delivery_event_id(key text, kind text, event_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN kind IS NULL
              THEN substr(key, length(split_part(key, ':', 2)) + 5,
                          length(key) - length(split_part(key, ':', 2))
                            - length(reverse(split_part(reverse(key), ':', 1))) - 5)
              ELSE event_id END
$$;
-- Whether a webhook's row may keep only its key: the key is its parts, and parses back to them.
CREATE FUNCTION hookrelay_delivery_keyed(key text, kind text, source text, event_id text,
                                         destination text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(kind = 'webhook' AND strpos(source, ':') = 0 AND strpos(destination, ':') = 0
                  AND key = 'wh:' || source || ':' || event_id || ':' || destination, false)
$$;

CREATE TABLE delivery_targets (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  url text NOT NULL,
  origin_topic text NOT NULL
);
-- Topic names hold no newline, so the pair is unambiguous.
CREATE UNIQUE INDEX delivery_targets_hash_idx
  ON delivery_targets ((encode(substr(digest(url || E'\n' || origin_topic, 'sha256'), 1, 16), 'hex')::uuid));

ALTER TABLE deliveries RENAME TO delivery_rows_0015;

CREATE TABLE delivery_rows (
  -- written by the claim that inserts the row, then never changed
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  target_id int,
  delivery_key text NOT NULL,
  kind text CHECK (kind IN ('webhook', 'call')),
  source text,
  event_id text,
  destination text,
  url text,
  origin_topic text,
  -- changed by claims, records and operators
  lease_until timestamptz,
  lease_token bigint,
  first_attempt_at timestamptz,
  last_attempt_at timestamptz,
  completed_at timestamptz,
  resend_id bigint,
  attempts integer NOT NULL DEFAULT 0,
  last_status integer,
  first_duration_ms integer,
  state text NOT NULL
    CHECK (state IN ('in_flight', 'retrying', 'succeeded', 'dead', 'parked')),
  lease_owner text,
  last_error text,
  first_worker_id text,
  CHECK ((kind IS NULL) = (source IS NULL) AND (kind IS NULL) = (event_id IS NULL)
         AND (kind IS NULL) = (destination IS NULL)),
  CHECK ((target_id IS NULL) = (url IS NOT NULL) AND (url IS NULL) = (origin_topic IS NULL))
) WITH (fillfactor = 48);

-- Existing rows, compacted as the claim writes new ones. Their triggers are not wanted here (the
-- rows keep their state; dead_letters and parked_deliveries already hold theirs).
INSERT INTO delivery_targets (url, origin_topic)
SELECT DISTINCT url, origin_topic FROM delivery_rows_0015 WHERE kind = 'webhook';

INSERT INTO delivery_rows (first_seen_at, target_id, delivery_key, kind, source, event_id,
                           destination, url, origin_topic, lease_until, lease_token,
                           first_attempt_at, last_attempt_at, completed_at, resend_id, attempts,
                           last_status, first_duration_ms, state, lease_owner, last_error,
                           first_worker_id)
SELECT o.first_seen_at, t.id, o.delivery_key,
       CASE WHEN keyed THEN NULL ELSE o.kind END, CASE WHEN keyed THEN NULL ELSE o.source END,
       CASE WHEN keyed THEN NULL ELSE o.event_id END,
       CASE WHEN keyed THEN NULL ELSE o.destination END,
       CASE WHEN t.id IS NULL THEN o.url END, CASE WHEN t.id IS NULL THEN o.origin_topic END,
       o.lease_until, o.lease_token, o.first_attempt_at, o.last_attempt_at, o.completed_at,
       o.resend_id, o.attempts, o.last_status, o.first_duration_ms, o.state, o.lease_owner,
       o.last_error, o.first_worker_id
FROM delivery_rows_0015 o
CROSS JOIN LATERAL hookrelay_delivery_keyed(o.delivery_key, o.kind, o.source, o.event_id,
                                            o.destination) AS keyed
LEFT JOIN delivery_targets t
  ON o.kind = 'webhook' AND t.url = o.url AND t.origin_topic = o.origin_topic;

-- delivery_attempts_all read the old table; it is made again below over the new one.
DROP VIEW delivery_attempts_all;
DROP TABLE delivery_rows_0015;

CREATE UNIQUE INDEX deliveries_key_hash_idx
  ON delivery_rows ((encode(substr(digest(delivery_key, 'sha256'), 1, 16), 'hex')::uuid));
CREATE INDEX deliveries_event_id_idx
  ON delivery_rows USING hash (hookrelay_delivery_event_id(delivery_key, kind, event_id));
CREATE INDEX deliveries_first_seen_idx ON delivery_rows (first_seen_at);

CREATE VIEW deliveries AS
SELECT r.delivery_key,
       coalesce(r.kind, 'webhook') AS kind,
       hookrelay_delivery_source(r.delivery_key, r.kind, r.source) AS source,
       hookrelay_delivery_event_id(r.delivery_key, r.kind, r.event_id) AS event_id,
       hookrelay_delivery_destination(r.delivery_key, r.kind, r.destination) AS destination,
       coalesce(r.url, (SELECT t.url FROM delivery_targets t WHERE t.id = r.target_id)) AS url,
       r.state, r.attempts, r.lease_owner, r.lease_until, r.first_seen_at, r.first_attempt_at,
       r.last_attempt_at, r.completed_at, r.last_status, r.last_error,
       coalesce(r.origin_topic,
                (SELECT t.origin_topic FROM delivery_targets t WHERE t.id = r.target_id))
         AS origin_topic,
       r.lease_token, r.resend_id, r.first_duration_ms, r.first_worker_id
FROM delivery_rows r;
-- What an INSERT through the view that names no value gets, as from the table before.
ALTER VIEW deliveries ALTER COLUMN attempts SET DEFAULT 0;
ALTER VIEW deliveries ALTER COLUMN first_seen_at SET DEFAULT now();
ALTER VIEW deliveries ALTER COLUMN origin_topic SET DEFAULT '';

CREATE VIEW delivery_attempts_all AS
SELECT delivery_key, attempt, started_at, duration_ms, http_status, outcome, error, worker_id
FROM delivery_attempts
UNION ALL
SELECT delivery_key, 1, first_attempt_at, first_duration_ms, last_status, 'succeeded',
       coalesce(last_error, ''), coalesce(first_worker_id, '')
FROM delivery_rows
WHERE first_duration_ms IS NOT NULL;

-- A webhook's target: its id, the row made if the pair is new. A pair a concurrent statement
-- inserted after this one's snapshot is found by ON CONFLICT, which returns its row.
CREATE FUNCTION hookrelay_delivery_target(p_url text, p_origin_topic text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  found int;
BEGIN
  SELECT id INTO found FROM delivery_targets t
  WHERE encode(substr(digest(t.url || E'\n' || t.origin_topic, 'sha256'), 1, 16), 'hex')::uuid
          = encode(substr(digest(p_url || E'\n' || p_origin_topic, 'sha256'), 1, 16), 'hex')::uuid
    AND t.url = p_url AND t.origin_topic = p_origin_topic;
  IF found IS NULL THEN
    INSERT INTO delivery_targets AS t (url, origin_topic) VALUES (p_url, p_origin_topic)
    ON CONFLICT ((encode(substr(digest(url || E'\n' || origin_topic, 'sha256'), 1, 16), 'hex')::uuid))
    DO UPDATE SET url = t.url
    RETURNING CASE WHEN t.url = p_url AND t.origin_topic = p_origin_topic THEN t.id END
      INTO found;
  END IF;
  RETURN found;
END;
$$;

-- INSERT INTO deliveries, as before 0016 (operators' tools, tests): stored compactly, as the
-- worker's claim stores its rows. Updates through the view change delivery_rows' own columns.
CREATE FUNCTION hookrelay_insert_delivery() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  keyed boolean := hookrelay_delivery_keyed(NEW.delivery_key, NEW.kind, NEW.source, NEW.event_id,
                                            NEW.destination);
  target int;
BEGIN
  IF NEW.kind = 'webhook' THEN
    target := hookrelay_delivery_target(NEW.url, coalesce(NEW.origin_topic, ''));
  END IF;
  INSERT INTO delivery_rows (first_seen_at, target_id, delivery_key, kind, source, event_id,
                             destination, url, origin_topic, lease_until, lease_token,
                             first_attempt_at, last_attempt_at, completed_at, resend_id, attempts,
                             last_status, first_duration_ms, state, lease_owner, last_error,
                             first_worker_id)
  VALUES (coalesce(NEW.first_seen_at, now()), target, NEW.delivery_key,
          CASE WHEN keyed THEN NULL ELSE NEW.kind END,
          CASE WHEN keyed THEN NULL ELSE NEW.source END,
          CASE WHEN keyed THEN NULL ELSE NEW.event_id END,
          CASE WHEN keyed THEN NULL ELSE NEW.destination END,
          CASE WHEN target IS NULL THEN NEW.url END,
          CASE WHEN target IS NULL THEN coalesce(NEW.origin_topic, '') END,
          NEW.lease_until, NEW.lease_token, NEW.first_attempt_at, NEW.last_attempt_at,
          NEW.completed_at, NEW.resend_id, coalesce(NEW.attempts, 0), NEW.last_status,
          NEW.first_duration_ms, NEW.state, NEW.lease_owner, NEW.last_error, NEW.first_worker_id);
  RETURN NEW;
END;
$$;
CREATE TRIGGER deliveries_insert INSTEAD OF INSERT ON deliveries
  FOR EACH ROW EXECUTE FUNCTION hookrelay_insert_delivery();

-- The dead-letter and parked trackers (0004, 0009, 0010) and the fold's (0015), on delivery_rows,
-- reading a compact row's source and destination from its key.
CREATE OR REPLACE FUNCTION hookrelay_track_dead_letter() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'dead' THEN
    INSERT INTO dead_letters (delivery_key, source, destination, last_attempt_at, first_seen_at)
    VALUES (NEW.delivery_key, hookrelay_delivery_source(NEW.delivery_key, NEW.kind, NEW.source),
            hookrelay_delivery_destination(NEW.delivery_key, NEW.kind, NEW.destination),
            NEW.last_attempt_at, NEW.first_seen_at)
    ON CONFLICT (delivery_key) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at;
  ELSE
    DELETE FROM dead_letters WHERE delivery_key = OLD.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION hookrelay_track_parked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state = 'parked' THEN
    INSERT INTO parked_deliveries (delivery_key, source, destination, first_seen_at)
    VALUES (NEW.delivery_key, hookrelay_delivery_source(NEW.delivery_key, NEW.kind, NEW.source),
            hookrelay_delivery_destination(NEW.delivery_key, NEW.kind, NEW.destination),
            NEW.first_seen_at)
    ON CONFLICT (delivery_key) DO NOTHING;
  ELSE
    DELETE FROM parked_deliveries WHERE delivery_key = OLD.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION hookrelay_unfold_first_attempt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                                 outcome, error, worker_id)
  VALUES (OLD.delivery_key, 1, OLD.first_attempt_at, OLD.first_duration_ms, OLD.last_status,
          'succeeded', coalesce(OLD.last_error, ''), coalesce(OLD.first_worker_id, ''));
  IF TG_OP = 'UPDATE' THEN
    UPDATE delivery_rows SET first_duration_ms = NULL, first_worker_id = NULL
    WHERE encode(substr(digest(delivery_key, 'sha256'), 1, 16), 'hex')::uuid
            = encode(substr(digest(NEW.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
      AND delivery_key = NEW.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_dead_letters
  AFTER UPDATE ON delivery_rows FOR EACH ROW
  WHEN (OLD.state = 'dead' OR NEW.state = 'dead')
  EXECUTE FUNCTION hookrelay_track_dead_letter();
CREATE TRIGGER deliveries_parked
  AFTER UPDATE ON delivery_rows FOR EACH ROW
  WHEN (OLD.state = 'parked' OR NEW.state = 'parked')
  EXECUTE FUNCTION hookrelay_track_parked();
CREATE TRIGGER deliveries_unfold_first_attempt
  AFTER UPDATE ON delivery_rows FOR EACH ROW
  WHEN (OLD.first_duration_ms IS NOT NULL AND NEW.first_duration_ms IS NOT NULL
        AND (NEW.state IS DISTINCT FROM 'succeeded'
             OR NEW.delivery_key IS DISTINCT FROM OLD.delivery_key
             OR NEW.first_attempt_at IS DISTINCT FROM OLD.first_attempt_at
             OR NEW.last_status IS DISTINCT FROM OLD.last_status
             OR NEW.last_error IS DISTINCT FROM OLD.last_error
             OR NEW.first_duration_ms IS DISTINCT FROM OLD.first_duration_ms
             OR NEW.first_worker_id IS DISTINCT FROM OLD.first_worker_id))
  EXECUTE FUNCTION hookrelay_unfold_first_attempt();
CREATE TRIGGER deliveries_unfold_first_attempt_on_delete
  AFTER DELETE ON delivery_rows FOR EACH ROW
  WHEN (OLD.first_duration_ms IS NOT NULL)
  EXECUTE FUNCTION hookrelay_unfold_first_attempt();
