-- 0023_retention_spares_waiting: hookrelay_delete_finished_deliveries (0021) spared the head of
-- an ordered key but not a finished delivery still listed behind a key in ordered_waiting (one
-- that finished out of its turn: its message was read again, or it was delivered before its
-- key's hold was known). Deleted while its key stayed held past the retention window (a head
-- parked for days), its waiting row was later released, the claim found no row, and the delivery
-- was sent a second time. Such a delivery is kept until its waiting row goes.
--
-- The lookup by delivery key gets an index (ordered_waiting had one by key and arrival only).

CREATE INDEX ordered_waiting_delivery_idx ON ordered_waiting (delivery_key);

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
          AND NOT EXISTS (SELECT 1 FROM ordered_waiting w WHERE w.delivery_key = r.delivery_key)
        ORDER BY r.first_seen_at
        LIMIT max_rows)
      AND d.state IN ('succeeded', 'dead')
      AND d.completed_at < now() - older_than
      AND d.lease_owner IS NULL
      AND d.resend_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM ordered_keys k WHERE k.head_key = d.delivery_key)
      AND NOT EXISTS (SELECT 1 FROM ordered_waiting w WHERE w.delivery_key = d.delivery_key)
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
