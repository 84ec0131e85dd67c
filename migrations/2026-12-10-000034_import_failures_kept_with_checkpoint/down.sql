ALTER TABLE operations DROP COLUMN batch_failures, DROP COLUMN claims_without_progress;
