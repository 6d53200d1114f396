-- 0012_lighter_delivery_indexes: the bytes each delivered event leaves in Postgres. Every
-- delivery adds one entry to each index on deliveries, and most of them carried the wide text
-- delivery_key. Measured under a steady stream of claims and records (batches of 50), per event:
-- deliveries 1,377 -> 767 bytes with indexes, delivery_attempts 251 -> 196, WAL 2,384 -> 1,690.
--
-- The first-seen indexes of 0006 were descending. New deliveries arrive with the newest
-- first_seen_at, which in a descending index is its left edge, and a btree page split there
-- leaves both halves half empty: the indexes were twice their data. Ascending, new entries go to
-- the right edge of the index (or of their source's or route's range), where a split leaves the
-- left page full; a backward scan still reads them newest first. They also drop delivery_key:
-- rows of one first_seen_at (one millisecond of ingest) are few, so the listing's order and
-- keyset cursor, (first_seen_at, delivery_key) newest first, sort that handful after the index
-- narrows the walk by first_seen_at (an incremental sort); the cursor's row comparison bounds the
-- scan by its first_seen_at. Nothing is updated in these columns: updates stay heap-only (0004).
DROP INDEX deliveries_first_seen_idx;
DROP INDEX deliveries_source_first_seen_idx;
DROP INDEX deliveries_destination_first_seen_idx;
CREATE INDEX deliveries_first_seen_idx ON deliveries (first_seen_at);
CREATE INDEX deliveries_source_first_seen_idx ON deliveries (source, first_seen_at);
CREATE INDEX deliveries_destination_first_seen_idx ON deliveries (destination, first_seen_at);

-- (source, event_id) repeats what deliveries_event_id_idx (0007) finds: an event id matches one
-- event's few deliveries, and the source is checked on them.
DROP INDEX deliveries_event_idx;

-- Looked up only by equality (an event id; one delivery's attempts): a hash index holds a 4-byte
-- hash per entry instead of the text, and the few rows it finds are sorted after.
DROP INDEX deliveries_event_id_idx;
CREATE INDEX deliveries_event_id_idx ON deliveries USING hash (event_id);
DROP INDEX delivery_attempts_key_idx;
CREATE INDEX delivery_attempts_key_idx ON delivery_attempts USING hash (delivery_key);

-- Written once by the claim and read by nothing: first_seen_at is when the delivery arrived,
-- first_attempt_at when it was first tried. A dropped column costs new rows nothing.
ALTER TABLE deliveries DROP COLUMN created_at;
