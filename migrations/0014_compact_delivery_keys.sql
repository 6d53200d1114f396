-- 0014_compact_delivery_keys: fewer and narrower index entries per delivered event. Every index
-- entry costs a WAL record of 60-75 bytes whatever its width, and the text keys made the two
-- unique indexes the widest. Measured with bench/storage (a claim with its inbound audit and a
-- record of one success per event, batches of 34; 3 runs each), per event: tables 1,224 -> 1,031
-- bytes, WAL 1,636 -> 1,304 (bench/results/storage-20261127-0954*.md).
--
-- Unique by a 128-bit hash of the text, not by the text: deliveries by the hash of delivery_key
-- and inbound_events by the hash of source || ':' || event_id (source names cannot hold ':'), each
-- the first 16 bytes of the text's SHA-256 as a uuid, 16 bytes an entry instead of 50-90.
-- pgcrypto's digest() hashes text as it is stored and is immutable, so it can be indexed (the
-- built-in sha256() takes bytea, and text's conversions to bytea are not immutable); pgcrypto
-- ships with PostgreSQL and is a trusted extension: the database's owner can create it.
-- Statements find a row through the hash and compare the text as well; the worker's claim and
-- inbound audit name these indexes in ON CONFLICT. Two different keys with one hash would be one
-- delivery (or one audit row): by chance about n^2 / 2^129 (1e-15 at a trillion keys), and
-- forcing it on purpose takes about 2^64 SHA-256 computations for two keys of one's own.
--
-- deliveries has no primary key any more: dead_letters, parked_deliveries and dlq_replays lose
-- their foreign keys to it (nothing deletes deliveries; the triggers of 0004 and 0010 write the
-- first two from deliveries' own rows). Logical replication of deliveries would need
-- REPLICA IDENTITY FULL.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_delivery_key_fkey;
ALTER TABLE parked_deliveries DROP CONSTRAINT parked_deliveries_delivery_key_fkey;
ALTER TABLE dlq_replays DROP CONSTRAINT dlq_replays_delivery_key_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey;
CREATE UNIQUE INDEX deliveries_key_hash_idx
  ON deliveries ((encode(substr(digest(delivery_key, 'sha256'), 1, 16), 'hex')::uuid));

ALTER TABLE inbound_events DROP CONSTRAINT inbound_events_source_event_id_key;
CREATE UNIQUE INDEX inbound_events_event_hash_idx
  ON inbound_events ((encode(substr(digest(source || ':' || event_id, 'sha256'), 1, 16), 'hex')::uuid));

-- One first-seen index: listing one source's or one route's deliveries walks it newest first
-- and checks the source or route on the rows walked, within the listing's scan budget
-- (shared/store/delivery_queries.cpp). Dead and parked deliveries keep their own per-source and
-- per-route indexes (0009, 0010).
DROP INDEX deliveries_source_first_seen_idx;
DROP INDEX deliveries_destination_first_seen_idx;

-- Written by every claim, record and release, read by nothing.
ALTER TABLE deliveries DROP COLUMN updated_at;

-- The body's SHA-256 as its 32 bytes rather than 64 hex characters. Readers encode it as hex.
ALTER TABLE inbound_events
  ALTER COLUMN body_sha256 DROP DEFAULT,
  ALTER COLUMN body_sha256 TYPE bytea USING decode(body_sha256, 'hex'),
  ALTER COLUMN body_sha256 SET DEFAULT '';
