-- 0022_replay_item_order: the runner reads a replay's unfinished items 200 at a time, in the
-- order they were stored (admin/replay_jobs.h, ReplayJobs::kUnfinishedItemsSql). The only index
-- of replay_items was its key (replay_id, delivery_key), so each batch read every item of the
-- replay, finished ones too, and sorted them: a release of a million parked deliveries read its
-- million items 5,000 times over. This index holds the unfinished items alone, in that order:
-- a batch reads its 200 rows, and a finished item drops out of it. It also answers
-- whether a replay has any item left (ReplayJobs::finish_if_done).
--
-- Its predicate is the statement's own status set (the planner uses a partial index only for a
-- condition that implies it). An item's update that changes its status is no longer heap-only:
-- one more index entry per item finished, on a table that grows by operators' actions.
--
-- Built in the migration's transaction (CONCURRENTLY cannot run in one: shared/store/migrator.h):
-- the marks and outcomes of running replays wait while it reads replay_items, which holds
-- operators' replays, not traffic.
CREATE INDEX replay_items_unfinished_idx ON replay_items (replay_id, position, delivery_key)
  WHERE status IN ('pending', 'marked');
