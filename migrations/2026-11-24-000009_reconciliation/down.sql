ALTER TABLE charge_activities DROP COLUMN reconciliation_run_id;
DROP INDEX refunds_created_idx;
DROP INDEX charges_created_idx;
DROP TABLE reconciliation_findings;
DROP TABLE reconciliation_runs;
