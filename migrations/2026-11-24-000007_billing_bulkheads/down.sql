ALTER TABLE charge_activities DROP CONSTRAINT charge_activities_action_check;
ALTER TABLE charge_activities ADD CONSTRAINT charge_activities_action_check CHECK (action IN (
    'created', 'succeeded', 'failed', 'refund_requested', 'refunded', 'refund_failed', 'disputed'
));
DROP INDEX charges_attention_idx;
DROP INDEX refunds_pending_due_idx;
CREATE INDEX refunds_pending_idx ON refunds (created_at) WHERE status = 'pending';
DROP INDEX charges_pending_due_idx;
CREATE INDEX charges_pending_idx ON charges (created_at) WHERE status = 'pending';
ALTER TABLE refunds
    DROP COLUMN send_lease_token, DROP COLUMN send_lease_until, DROP COLUMN attempts,
    DROP COLUMN next_attempt_at, DROP COLUMN last_attempt_error, DROP COLUMN attention_reason,
    DROP COLUMN attention_since;
ALTER TABLE charges
    DROP COLUMN failure_kind, DROP COLUMN failure_param, DROP COLUMN send_lease_token,
    DROP COLUMN send_lease_until, DROP COLUMN attempts, DROP COLUMN next_attempt_at,
    DROP COLUMN last_attempt_error, DROP COLUMN attention_reason, DROP COLUMN attention_since;
