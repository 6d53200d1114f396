-- 0021_bounded_retention: the retention functions of 0001 and 0019, mended.
--
-- hookrelay_delete_finished_deliveries: the head of an ordered key was excluded only by the
-- DELETE, after the batch of `max_rows` oldest rows was chosen. A finished head still in
-- ordered_keys is among the oldest rows, so every call returned fewer than `max_rows`, and a job
-- that calls it "until it returns less than max_rows" stopped after one batch a day. It is now
-- excluded when the batch is chosen.
--
-- hookrelay_ensure_attempt_partitions, creating a day's partition that is missing (the job
-- stopped for a week), moves that day's rows out of the default partition and then creates the
-- partition. A worker recording an attempt of that day between the two put a row back into the
-- default partition, and CREATE failed ("updated partition constraint for default partition would
-- be violated"), every day, leaving every attempt in the default partition. It now takes the
-- lock the creation takes (ACCESS EXCLUSIVE on delivery_attempts) before the move instead of
-- after it: attempt records and reads of the audit wait from the move to the creation. A weaker
-- lock first deadlocks with a record that read the table before it wrote (the creation's lock on
-- the default partition waits for that reader, which waits for the weaker lock).

CREATE OR REPLACE FUNCTION hookrelay_delete_finished_deliveries(older_than interval,
                                                                max_rows int DEFAULT 100000)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  deleted bigint;
BEGIN
  IF older_than IS NULL OR older_than < interval '1 day' THEN
    RAISE EXCEPTION 'older_than must be at least 1 day (it is %): deleting a delivery forgets its idempotency key', older_than;
  END IF;
  IF max_rows IS NULL OR max_rows < 1 THEN
    RAISE EXCEPTION 'max_rows must be at least 1 (it is %)', max_rows;
  END IF;
  PERFORM set_config('hookrelay.deleting_finished', 'on', true);
  -- The conditions stand on the DELETE itself too: a row a worker changes while this waits for
  -- its lock (a resend claimed, a lease taken, a key it now heads) is checked again in its new
  -- version, and kept.
  WITH gone AS (
    DELETE FROM delivery_rows d
    WHERE d.ctid IN (
        SELECT r.ctid FROM delivery_rows r
        WHERE r.first_seen_at < now() - older_than
          AND r.state IN ('succeeded', 'dead')
          AND r.completed_at < now() - older_than
          AND r.lease_owner IS NULL
          AND r.resend_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM ordered_keys k WHERE k.head_key = r.delivery_key)
        ORDER BY r.first_seen_at
        LIMIT max_rows)
      AND d.state IN ('succeeded', 'dead')
      AND d.completed_at < now() - older_than
      AND d.lease_owner IS NULL
      AND d.resend_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM ordered_keys k WHERE k.head_key = d.delivery_key)
    RETURNING d.delivery_key, d.state
  ), dead AS (
    DELETE FROM dead_letters d USING gone g
    WHERE g.state = 'dead' AND d.delivery_key = g.delivery_key
    RETURNING 1
  )
  SELECT count(*) INTO deleted FROM gone;
  PERFORM set_config('hookrelay.deleting_finished', 'off', true);
  RETURN deleted;
END;
$$;

CREATE OR REPLACE FUNCTION hookrelay_ensure_attempt_partitions(days_ahead int) RETURNS int
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
    -- No attempt of that day may reach the default partition between the move and the creation.
    LOCK TABLE delivery_attempts IN ACCESS EXCLUSIVE MODE;
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
