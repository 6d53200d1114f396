-- 0002_lean_delivery_indexes: every claim inserts a deliveries row version and every record
-- adds another, and both change `state`, so each secondary index costs an index entry per
-- delivery per step. Only dead letters are listed by state (`hookrelay dlq list`), so one
-- partial index serves them and keeps the bulk of rows (succeeded) out of it. Listing other
-- states scans the table, which is acceptable for an operator command.
DROP INDEX deliveries_state_last_attempt_idx;
DROP INDEX deliveries_source_state_idx;
DROP INDEX deliveries_destination_state_idx;
CREATE INDEX deliveries_dead_idx ON deliveries (last_attempt_at DESC) WHERE state = 'dead';
