-- Issue 46, the rest of the catalogue (docs/webhooks.md, "The catalogue"), and what the
-- retention sweep of old events reads.
--
-- * refund.succeeded now carries the charge after the refund (as RefundCharge returns it), with
--   the refund itself beside it under `refund`; migration 22 stored the refund row alone, which
--   the API shows nowhere.
-- * attachment.ready: an upload completed (CompleteAttachment, or its sweeper's twin).
-- * operation.done: an import ended, succeeded, failed or cancelled, with its counts and row
--   errors; never its content, which can be megabytes of CSV.
-- * The sweep deletes events past EVENT_RETENTION_DAYS none of whose deliveries is pending.

CREATE OR REPLACE FUNCTION refunds_succeeded_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    charge jsonb;
BEGIN
    IF NEW.status = 'succeeded'
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'succeeded') THEN
        -- The refund's amount was reserved on the charge when it was asked for: the charge as it
        -- is now already counts it.
        SELECT to_jsonb(c) - 'send_lease_token' - 'send_lease_until' - 'last_attempt_error'
        INTO charge
        FROM charges c WHERE c.id = NEW.charge_id;
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'refund.succeeded', NEW.id,
                charge || jsonb_build_object('refund',
                    to_jsonb(NEW) - 'send_lease_token' - 'send_lease_until'
                        - 'last_attempt_error'));
    END IF;
    RETURN NULL;
END
$$;

-- Those recorded before this migration take the same shape (the charge as it is now).
UPDATE events e
SET snapshot = (to_jsonb(c) - 'send_lease_token' - 'send_lease_until' - 'last_attempt_error')
    || jsonb_build_object('refund', e.snapshot)
FROM charges c
WHERE e.type = 'refund.succeeded' AND c.id = (e.snapshot ->> 'charge_id')::uuid;

CREATE FUNCTION attachments_ready_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'ready' AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 'ready') THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'attachment.ready', NEW.id,
                to_jsonb(NEW) - 'sha256'
                    || jsonb_build_object('sha256', encode(NEW.sha256, 'hex')));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER attachments_ready_events AFTER INSERT OR UPDATE OF state ON attachments
    FOR EACH ROW EXECUTE FUNCTION attachments_ready_events();

CREATE FUNCTION operations_done_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IN ('succeeded', 'failed', 'cancelled')
       AND OLD.state NOT IN ('succeeded', 'failed', 'cancelled') THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'operation.done', NEW.id,
                to_jsonb(NEW) - 'content' - 'lease_owner' - 'lease_expires_at');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER operations_done_events AFTER UPDATE OF state ON operations
    FOR EACH ROW EXECUTE FUNCTION operations_done_events();

-- The retention sweep walks events from the oldest.
CREATE INDEX events_created_idx ON events (created_at);

-- An event's deliveries, for the sweep's check and for the cascade when it deletes the event.
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);

-- An endpoint's oldest due delivery in one probe: the claim asks it of every endpoint whose
-- lease is free (one whose deliveries wait for their retries holds many pending rows).
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE state = 'pending';
