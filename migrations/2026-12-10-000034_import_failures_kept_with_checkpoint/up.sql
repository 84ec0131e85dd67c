-- An import's failures at the batch it is stuck on, kept with its checkpoint rather than in the
-- memory of the worker that saw them: a worker that stops, crashes or loses its lease no longer
-- takes the count with it, so a batch the database refuses every time fails its import after
-- the stated number of attempts, however many workers tried it.
--   batch_failures: the failed attempts at the batch at rows_read that PostgreSQL recorded
--     (reset when a batch commits).
--   claims_without_progress: the claims since the last committed batch that did not give the
--     operation back cleanly (a worker that crashed, hung or lost its lease on the batch).
ALTER TABLE operations
  ADD COLUMN batch_failures integer NOT NULL DEFAULT 0,
  ADD COLUMN claims_without_progress integer NOT NULL DEFAULT 0;
