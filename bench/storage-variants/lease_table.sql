ALTER TABLE deliveries SET (fillfactor = 100);
ALTER TABLE deliveries ADD COLUMN first_duration_ms int, ADD COLUMN first_status int, ADD COLUMN first_worker_id text;
CREATE TABLE delivery_leases (key_hash uuid PRIMARY KEY, lease_owner text NOT NULL, lease_until timestamptz NOT NULL, lease_token bigint NOT NULL);
