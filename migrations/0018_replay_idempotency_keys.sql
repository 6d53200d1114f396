-- 0018_replay_idempotency_keys: the Idempotency-Key of POST /v1/replays. A client whose POST timed
-- out retries it; without a key each retry was a new replay, and a replay of succeeded deliveries
-- resends them, so the receiver got each one once per retry. A key names the one replay its first
-- POST created: a later POST with the same key and the same request (body and admin token, the
-- SHA-256 of both) answers with that replay and creates nothing; another request is refused (422).
--
-- The key is the primary key, so of two POSTs with the same key at once one inserts and the other
-- waits for it, then finds its row (ON CONFLICT DO NOTHING): one replay, never two. The row is
-- inserted first, in the transaction that creates the replay, naming the replay id it takes from
-- the sequence; the foreign key is checked at commit, once the replay row is there too.
--
-- Retention: as long as the replay it names (replays are kept; deleting one deletes its key).
CREATE TABLE replay_idempotency_keys (
  idempotency_key text PRIMARY KEY,
  request_sha256  bytea NOT NULL,        -- SHA-256 of the admin token's name and the request
  requested_by    text NOT NULL,         -- who created the replay (admin-token-<i>)
  replay_id       bigint NOT NULL REFERENCES replays (id) ON DELETE CASCADE
                    DEFERRABLE INITIALLY DEFERRED,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replay_idempotency_keys_replay_idx ON replay_idempotency_keys (replay_id);
