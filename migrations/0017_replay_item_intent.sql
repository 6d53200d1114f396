-- 0017_replay_item_intent: whether a replay resends each of its keys, fixed when the replay is
-- requested. A replay by keys resends the keys that are succeeded then and replays the dead ones
-- (docs/admin.md). The runner used to decide by the state it found when it reached the key, so a
-- key dead when it was asked for and delivered since (by another replay of the same keys, such as
-- a client's retried POST, or by `hookrelay dlq replay`) was resent: its receiver got it twice.
-- Now such a key is skipped; a filter on succeeded deliveries resends every key, a filter on dead
-- ones and the release of a resumed route none.
ALTER TABLE replay_items ADD COLUMN resend boolean NOT NULL DEFAULT false;

-- Replays still running across the upgrade: the keys of a filter on succeeded deliveries, and the
-- keys listed by hand that were succeeded before the replay was created (completed since then:
-- delivered after it) or that it already marked for a resend.
UPDATE replay_items i SET resend = true
  FROM replays r
 WHERE r.id = i.replay_id AND r.state = 'running' AND i.status IN ('pending', 'marked')
   AND (r.request -> 'filter' ->> 'state' = 'succeeded'
        OR (r.request ? 'keys' AND EXISTS (
              SELECT 1 FROM deliveries d
               WHERE encode(substr(digest(d.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
                     = encode(substr(digest(i.delivery_key, 'sha256'), 1, 16), 'hex')::uuid
                 AND d.delivery_key = i.delivery_key AND d.state = 'succeeded'
                 AND (d.resend_id = r.id OR d.completed_at < r.created_at))));
