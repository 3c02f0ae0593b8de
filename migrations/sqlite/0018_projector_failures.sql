-- A projector that keeps failing shows it (DESIGN rule 9): how many times in a row it failed,
-- the last error and when, kept beside its checkpoint so that `careledger projections status`
-- (another process) and `/ready` see the same. A batch applied clears them.
ALTER TABLE checkpoints ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE checkpoints ADD COLUMN last_error TEXT;
ALTER TABLE checkpoints ADD COLUMN failed_at TEXT;
