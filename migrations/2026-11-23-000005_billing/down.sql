ALTER TABLE idempotency_keys DROP COLUMN recovery_point;
DROP TABLE charge_activities;
DROP TABLE refunds;
DROP TABLE charges;
