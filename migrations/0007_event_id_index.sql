-- 0007_event_id_index: GET /v1/deliveries?event_id=... without a source read the whole of
-- deliveries_event_idx (source, event_id) (133 ms at a million deliveries, bench/admin). One
-- index on event_id serves it and GET /v1/calls/{id} (event_id = the call id, kind = 'call'),
-- so the partial call index of 0006 goes. event_id is never updated: updates stay heap-only.
CREATE INDEX deliveries_event_id_idx ON deliveries (event_id);
DROP INDEX deliveries_call_event_idx;
