DROP INDEX webhook_deliveries_due_idx;
DROP INDEX webhook_deliveries_event_idx;
DROP INDEX events_created_idx;
DROP TRIGGER operations_done_events ON operations;
DROP FUNCTION operations_done_events();
DROP TRIGGER attachments_ready_events ON attachments;
DROP FUNCTION attachments_ready_events();
DELETE FROM events WHERE type IN ('attachment.ready', 'operation.done', 'refund.succeeded');
CREATE OR REPLACE FUNCTION refunds_succeeded_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'succeeded'
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'succeeded') THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'refund.succeeded', NEW.id,
                to_jsonb(NEW) - 'send_lease_token' - 'send_lease_until' - 'last_attempt_error');
    END IF;
    RETURN NULL;
END
$$;
