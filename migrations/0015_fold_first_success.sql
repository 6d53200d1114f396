-- 0015_fold_first_success: a first attempt that succeeds is kept in its deliveries row instead
-- of a delivery_attempts row. Most deliveries succeed at their first attempt, and that row with
-- its hash index entry cost about 171 bytes of tables and 240 of WAL per delivered event, for
-- values the deliveries row holds after the record anyway: first_attempt_at is the attempt's
-- start, last_status its HTTP status, last_error its error; only the duration and the worker id
-- were missing. Measured with bench/storage (a claim with its inbound audit and a record of one
-- success per event, batches of 34), 3 runs each, this change's statements alternating with
-- a6a00cd's, medians per event: tables 1,031 -> 901 bytes, WAL 1,208 -> 982 (PostgreSQL CPU
-- 68 -> 62 us, within its noise). The deliveries heap grows 563 -> 602 (the two columns, in both
-- of its versions), delivery_attempts' 127 + 45 are gone.
--
-- Folded: a success of attempt 1 that moves the row to 'succeeded' while no attempt was recorded
-- on it before (first_attempt_at was NULL, so it is now this attempt's start). The worker's record
-- sets first_duration_ms and first_worker_id then, and writes no delivery_attempts row. Every
-- other attempt is a row as before: failures, later attempts, a success that found the delivery
-- succeeded already ('duplicate_success'), operator marks ('replayed', 'resent').
--
-- Readers see every attempt through the view delivery_attempts_all: the rows of
-- delivery_attempts and the folded first attempts, each column as the row would have held it (the
-- record stores a status of 0 as NULL and no error as '' there too). Look one delivery's
-- attempts up with its key's hash (HR_KEY_IS in shared/store/key_hash_sql.h): the condition
-- reaches both sides of the view, the hash serving deliveries' unique index and delivery_key the
-- attempts' hash index. A condition on delivery_key alone reads deliveries whole.
--
-- The folded attempt is read from columns that stay as they are while the row is succeeded
-- (first_attempt_at, last_status, last_error). Whatever changes one of them, takes the row out of
-- 'succeeded' (the claim of an operator's resend, before the next record sets the last status)
-- or deletes the row has the attempt written to delivery_attempts as it was, and the fold
-- cleared, in the same statement (trigger deliveries_unfold_first_attempt), so it is never lost
-- or rewritten. Clearing first_duration_ms by hand drops the fold without writing it out.
--
-- A folded attempt lives as long as its deliveries row: retention
-- (hookrelay_drop_attempt_partitions) drops delivery_attempts rows only. Rows written before this
-- migration have no fold and keep their delivery_attempts rows.
ALTER TABLE deliveries ADD COLUMN first_duration_ms int, ADD COLUMN first_worker_id text;

-- The record's version of a folded row is about 16 bytes wider than the claim's: it drops the
-- lease (owner, until, token) as before but now keeps the worker id and the duration. Pages
-- filled to half (0004) then had room for the updates of all their rows only when rounding left
-- some over: bench/storage had 6,500 of 6,800 updates heap-only (3 runs, WAL 1,054-1,055 bytes
-- per event), each other one an entry in every index. Filled to 48%, a page has room for the
-- updates of its rows down to rows of about 200 bytes (a webhook's are 250-300): 6,800 of 6,800,
-- the same tables and WAL 981.
ALTER TABLE deliveries SET (fillfactor = 48);

CREATE VIEW delivery_attempts_all AS
SELECT delivery_key, attempt, started_at, duration_ms, http_status, outcome, error, worker_id
FROM delivery_attempts
UNION ALL
SELECT delivery_key, 1, first_attempt_at, first_duration_ms, last_status, 'succeeded',
       coalesce(last_error, ''), coalesce(first_worker_id, '')
FROM deliveries
WHERE first_duration_ms IS NOT NULL;

-- An AFTER trigger: a BEFORE UPDATE trigger locks each row it is evaluated for before its WHEN
-- clause is, which wrote a Heap/LOCK WAL record of 56 bytes per record (bench/storage). An AFTER
-- trigger's WHEN clause is evaluated as the row is updated (the record's rows, and the claim's of
-- rows it already has), and the function runs only for a folded row that changed: it writes the
-- attempt from the row as it was, then clears the fold (which does not fire it again).
CREATE FUNCTION hookrelay_unfold_first_attempt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO delivery_attempts (delivery_key, attempt, started_at, duration_ms, http_status,
                                 outcome, error, worker_id)
  VALUES (OLD.delivery_key, 1, OLD.first_attempt_at, OLD.first_duration_ms, OLD.last_status,
          'succeeded', coalesce(OLD.last_error, ''), coalesce(OLD.first_worker_id, ''));
  IF TG_OP = 'UPDATE' THEN
    UPDATE deliveries SET first_duration_ms = NULL, first_worker_id = NULL
    WHERE encode(substr(digest(delivery_key, 'sha256'), 1, 16), 'hex')::uuid
            = encode(substr(digest(NEW.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
      AND delivery_key = NEW.delivery_key;
  END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER deliveries_unfold_first_attempt
  AFTER UPDATE ON deliveries FOR EACH ROW
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
  AFTER DELETE ON deliveries FOR EACH ROW
  WHEN (OLD.first_duration_ms IS NOT NULL)
  EXECUTE FUNCTION hookrelay_unfold_first_attempt();
