-- 0003_inbound_event_retention: inbound_events gains one row per accepted webhook and nothing
-- removed them. They are an audit of what arrived (duplicates are recognised by deliveries, not
-- here), so rows older than the audit window can go. Returns how many rows were deleted; uses
-- inbound_events_received_idx. Run it daily, next to hookrelay_drop_attempt_partitions.
CREATE FUNCTION hookrelay_delete_inbound_events(older_than interval) RETURNS bigint
LANGUAGE sql AS $$
  WITH gone AS (
    DELETE FROM inbound_events WHERE received_at < now() - older_than RETURNING 1
  )
  SELECT count(*) FROM gone
$$;
