ALTER TABLE deliveries ADD COLUMN first_duration_ms int, ADD COLUMN first_status int, ADD COLUMN first_worker_id text;
