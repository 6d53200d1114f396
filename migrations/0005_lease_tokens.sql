-- 0005_lease_tokens: a claim is exclusive per attempt, not per worker. Before, a worker could
-- claim a delivery whose unexpired lease it already held (a second copy of one retry message,
-- replayed after a failed offset commit), and the two attempts could both deliver: the second
-- claim ran on the claim connection before the first attempt's success committed on the record
-- connection. Each claim now writes a token of its own; the lease is taken only when it is free,
-- expired, or held by an earlier run of the same worker id (the token's high 32 bits name the
-- run), and an attempt's record moves the delivery's state only when its token still holds the
-- lease (or it is the first success). The column is not indexed: updates stay heap-only.
ALTER TABLE deliveries ADD COLUMN lease_token bigint;
