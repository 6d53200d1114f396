-- 0013_route_host_states: each worker's view of every destination host its routes call: the
-- circuit breaker's state and the adaptive in-flight limit (worker/circuit_breaker.h,
-- worker/flow_control.h). Both live in the worker's memory; every worker upserts its rows every
-- few seconds (worker/host_state_publisher.h) so `hookrelay routes list` and GET /v1/routes can
-- show them, joined by the route's host. A row not updated for a while belongs to a worker that
-- stopped: readers show it as stale, and workers delete rows an hour old.
CREATE TABLE route_host_states (
  host           text NOT NULL,              -- "host:port", as the route's url connects
  worker_id      text NOT NULL,
  circuit        text NOT NULL CHECK (circuit IN ('closed', 'open', 'half_open')),
  open_until     timestamptz,                -- while open: when it turns half-open
  adaptive_limit int NOT NULL,               -- the host's in-flight limit now
  max_limit      int NOT NULL,               -- worker.per_host_max_in_flight (<= 0: no limit)
  paused_until   timestamptz,                -- a Retry-After pause of the whole host
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (host, worker_id)
);
