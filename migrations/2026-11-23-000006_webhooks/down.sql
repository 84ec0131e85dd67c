ALTER TABLE charge_activities DROP CONSTRAINT charge_activities_action_check;
ALTER TABLE charge_activities ADD CONSTRAINT charge_activities_action_check CHECK (action IN (
    'created', 'succeeded', 'failed', 'refund_requested', 'refunded', 'refund_failed'
));
ALTER TABLE charge_activities DROP COLUMN webhook_event_id;
DROP TABLE charge_disputes;
DROP INDEX charges_provider_payment_idx;
DROP TABLE webhook_events;
