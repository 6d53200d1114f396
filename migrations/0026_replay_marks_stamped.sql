-- 0026_replay_marks_stamped: replay marks made before this release carry the stamp this release
-- looks for.
--
-- A replay mark (a dead delivery put back in the retry flow, a parked one released) now sets the
-- delivery's last_attempt_at to the mark's own instant, the replayed_at of its dlq_replays row and
-- the updated_at of its replay item (one transaction, one now()). Whether a worker took a replay
-- up is then whether last_attempt_at still equals that instant, instead of comparing a worker's
-- clock (last_attempt_at) with the database's (replayed_at), which a worker clock behind the
-- database's got wrong. A mark made by an earlier release and not taken up yet (a run interrupted
-- between its mark and its produce, still 'retrying' with no lease and no attempt since) is
-- stamped here, so `dlq replay --unfinished`, a resumed admin replay and a rerun route resume find
-- it as they did before.
UPDATE delivery_rows d SET last_attempt_at = r.replayed_at
FROM (SELECT DISTINCT ON (delivery_key) delivery_key, replayed_at
      FROM dlq_replays ORDER BY delivery_key, id DESC) r
WHERE encode(substr(digest(d.delivery_key, 'sha256'), 1, 16), 'hex')::uuid =
      encode(substr(digest(r.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
  AND d.delivery_key = r.delivery_key
  AND d.state = 'retrying' AND d.lease_owner IS NULL
  AND (d.last_attempt_at IS NULL OR d.last_attempt_at < r.replayed_at);
