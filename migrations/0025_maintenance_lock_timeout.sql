-- 0025_maintenance_lock_timeout: the attempt-partition maintenance no longer holds up the workers
-- behind a long reader.
--
-- hookrelay_ensure_attempt_partitions (LOCK TABLE delivery_attempts IN ACCESS EXCLUSIVE MODE,
-- migrations/0021) and hookrelay_drop_attempt_partitions (DROP TABLE of a partition, which takes
-- ACCESS EXCLUSIVE on delivery_attempts too) waited for their locks without limit. While any
-- transaction held even ACCESS SHARE on delivery_attempts (a pg_dump, a session left open after
-- reading delivery_attempts_all), the request waited in the lock queue and every worker's
-- INSERT INTO delivery_attempts queued behind it: each worker's record ran into its
-- statement_timeout, for as long as the reader lasted.
--
-- Both now wait at most 1 s for each lock (lock_timeout, set on the function so it holds for
-- every caller, the CronJob's psql, DeliveryQueries and an operator at a prompt alike, and is
-- restored when the function returns or fails, never leaking into the caller's session or
-- transaction). A worker's record is held at most that long. When a lock cannot be had, the call
-- fails with SQLSTATE 55P03 (lock_not_available), changes nothing, and says which sessions hold
-- the table; the callers try again a few times, a pause apart. Meanwhile attempts are still
-- recorded: a day without its partition goes to delivery_attempts_default, which the next run
-- that gets the lock moves into the new partition. Everything else the two functions do is
-- unchanged.

-- The sessions other than this one holding a lock on delivery_attempts or one of its partitions,
-- the 5 oldest transactions first: for the message of a maintenance call that could not get its
-- lock.
-- No statement text (it may hold delivered data): the pid, for pg_stat_activity.
CREATE OR REPLACE FUNCTION hookrelay_attempt_lock_holders() RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT coalesce(
    'held by ' || string_agg(
      format('pid %s (application %L, %s, transaction open %s)', a.pid,
             coalesce(a.application_name, ''), coalesce(a.state, 'state hidden'),
             coalesce(date_trunc('second', clock_timestamp() - a.xact_start)::text, 'unknown')),
      '; ' ORDER BY a.xact_start NULLS LAST),
    'its holder has gone')
  FROM (
    SELECT * FROM pg_stat_activity
    WHERE pid <> pg_backend_pid()
      AND pid IN (SELECT l.pid FROM pg_locks l
                  WHERE l.granted AND l.locktype = 'relation'
                    AND l.relation IN (SELECT relid FROM pg_partition_tree('delivery_attempts')))
    ORDER BY xact_start NULLS LAST
    LIMIT 5
  ) a
$$;

CREATE OR REPLACE FUNCTION hookrelay_ensure_attempt_partitions(days_ahead int) RETURNS int
LANGUAGE plpgsql
SET lock_timeout = '1s'
AS $$
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
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION USING
    ERRCODE = 'lock_not_available',
    MESSAGE = format('hookrelay_ensure_attempt_partitions: delivery_attempts is locked by another '
                     'transaction; gave up after lock_timeout %s, no partition created',
                     current_setting('lock_timeout')),
    DETAIL = hookrelay_attempt_lock_holders(),
    HINT = 'Run it again once that transaction ends. Attempts of a day without its partition are '
           'kept in delivery_attempts_default until then.';
END;
$$;

CREATE OR REPLACE FUNCTION hookrelay_drop_attempt_partitions(older_than interval) RETURNS int
LANGUAGE plpgsql
SET lock_timeout = '1s'
AS $$
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
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION USING
    ERRCODE = 'lock_not_available',
    MESSAGE = format('hookrelay_drop_attempt_partitions: delivery_attempts is locked by another '
                     'transaction; gave up after lock_timeout %s, nothing dropped',
                     current_setting('lock_timeout')),
    DETAIL = hookrelay_attempt_lock_holders(),
    HINT = 'Run it again once that transaction ends.';
END;
$$;
