-- 0011_key_order: per-key ordering across retries for ordered routes (worker/key_order.h).
--
-- A key of an ordered route whose head delivery waits in a retry tier is "held": one row here
-- names the head. While it is held, later deliveries of that key are not attempted: each waits
-- as a row of ordered_waiting, holding what is needed to publish it again (its retry message),
-- and its Kafka offset can be committed. When the head succeeds or is dead-lettered, the first
-- waiting row becomes the head and its message is published to the first retry tier; with no
-- row left the key is free again. Every worker reads these tables, so a crash or a rebalance
-- keeps the order.
CREATE TABLE ordered_keys (
  source       text NOT NULL,
  route        text NOT NULL,
  ordering_key text NOT NULL,
  head_key     text NOT NULL,   -- delivery key of the head; '' = none yet: release the first waiting
  held_since   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source, route, ordering_key)
);

CREATE TABLE ordered_waiting (
  id           bigserial PRIMARY KEY,   -- arrival order within a key
  source       text NOT NULL,
  route        text NOT NULL,
  ordering_key text NOT NULL,
  delivery_key text NOT NULL,
  topic        text NOT NULL,            -- where the message goes when released
  headers      text[] NOT NULL,          -- name, value, name, value, ...
  body         bytea NOT NULL,
  waiting_since timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ordered_waiting_key_idx ON ordered_waiting (source, route, ordering_key, id);
