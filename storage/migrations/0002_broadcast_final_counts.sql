-- A broadcast's counts when it ended (JSON). Kept on the broadcast itself because a reader's
-- /stop deletes their outbox rows, and the record of what was sent must not shrink with them.
ALTER TABLE broadcasts ADD COLUMN final_counts TEXT;
