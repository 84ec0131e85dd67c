-- Issue 46: events the service sends out (docs/webhooks.md, "Webhooks we send").
--
-- * events: the outbox. A row is written by a trigger on the table whose change it reports, in
--   the change's own statement, so no event exists without its change and no change without its
--   event, whoever wrote it (an RPC, a worker, an import, a hand-written UPDATE). It keeps the
--   row as it was after the change (`snapshot`), which the service renders as the API would
--   return it. `txid` orders a feed the way tickets' change_txid does (migration 16).
-- * webhook_endpoints: where an account wants its events sent, with the secret they are signed
--   with (encrypted by the service; a rotated-out secret kept until its overlap ends), and the
--   lease of the one worker (of any instance) delivering to it at a time.
-- * webhook_deliveries: one event for one endpoint, a queue row. Written by a trigger on events
--   for every endpoint of the account whose filter takes the event type, disabled ones too
--   (they wait; re-enabling delivers what they missed).
-- * webhook_delivery_attempts: each attempt, with what the endpoint answered.

-- The notice to an account's admins that an endpoint was disabled.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN (
    'ticket_created', 'comment_added', 'ticket_solved',
    'password_reset', 'invitation', 'charge_receipt', 'refund_notice', 'endpoint_disabled'
));

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    -- Empty: every event type.
    event_types text[] NOT NULL DEFAULT '{}',
    secret_ciphertext bytea NOT NULL,
    previous_secret_ciphertext bytea,
    previous_secret_expires_at timestamptz,
    state text NOT NULL DEFAULT 'enabled' CHECK (state IN ('enabled', 'disabled')),
    disabled_reason text CHECK (disabled_reason IN ('failing', 'by_admin')),
    disabled_at timestamptz,
    -- The first failed attempt since the endpoint last answered 2xx.
    failing_since timestamptz,
    last_success_at timestamptz,
    -- After a failed attempt the endpoint rests until then, whatever else is due for it.
    retry_at timestamptz,
    lease_token uuid,
    lease_until timestamptz,
    version bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'disabled') = (disabled_at IS NOT NULL))
);

CREATE INDEX webhook_endpoints_account_idx ON webhook_endpoints (account_id, id);

CREATE TABLE events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigserial NOT NULL UNIQUE,
    account_id uuid NOT NULL,
    type text NOT NULL,
    resource_id uuid NOT NULL,
    -- The API field paths a change changed (ticket.updated and its kin), else empty.
    changed_fields text[] NOT NULL DEFAULT '{}',
    snapshot jsonb NOT NULL,
    -- A test event is for one endpoint only.
    endpoint_id uuid REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_account_feed_idx ON events (account_id, txid, seq);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    event_seq bigint NOT NULL,
    event_type text NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    last_http_status integer,
    last_error text,
    redrive_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz,
    UNIQUE (endpoint_id, event_id)
);

-- The head of each endpoint's line: its pending deliveries in the order of their events.
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (endpoint_id, event_seq)
    WHERE state = 'pending';
-- ListWebhookDeliveries, newest first.
CREATE INDEX webhook_deliveries_endpoint_idx
    ON webhook_deliveries (endpoint_id, event_seq DESC);

CREATE TABLE webhook_delivery_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    account_id uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    url text NOT NULL,
    started_at timestamptz NOT NULL,
    latency_ms integer NOT NULL,
    http_status integer,
    error text,
    response_excerpt text NOT NULL DEFAULT '',
    -- Numbered on across redrives (the delivery's `attempts` counts its current schedule).
    PRIMARY KEY (delivery_id, attempt)
);

-- Fan-out: every endpoint of the account whose filter takes the event, in the event's statement.
CREATE FUNCTION events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (account_id, endpoint_id, event_id, event_seq, event_type)
    SELECT NEW.account_id, e.id, NEW.id, NEW.seq, NEW.type
    FROM webhook_endpoints e
    WHERE e.account_id = NEW.account_id
      AND (NEW.endpoint_id IS NULL OR e.id = NEW.endpoint_id)
      AND (NEW.endpoint_id IS NOT NULL OR cardinality(e.event_types) = 0
           OR NEW.type = ANY (e.event_types));
    RETURN NULL;
END
$$;

CREATE TRIGGER events_fan_out AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_fan_out();

-- A ticket as the API shows it: its row without the search columns, with its requester's email.
CREATE FUNCTION ticket_event_snapshot(t tickets) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'account_id', t.account_id, 'subject', t.subject,
        'description', t.description, 'priority', t.priority, 'status', t.status,
        'requester_id', t.requester_id, 'assignee_id', t.assignee_id,
        'created_at', t.created_at, 'updated_at', t.updated_at, 'version', t.version,
        'deleted_at', t.deleted_at,
        'requester_email', (SELECT email FROM users WHERE users.id = t.requester_id))
$$;

-- Tickets: one statement-level trigger for inserts (an import's thousand rows are one INSERT
-- into events), one row trigger for updates.
CREATE FUNCTION tickets_created_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (account_id, type, resource_id, snapshot)
    SELECT inserted.account_id, 'ticket.created', inserted.id, ticket_event_snapshot(inserted)
    FROM inserted
    ORDER BY inserted.created_at, inserted.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_created_events AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_created_events();

CREATE FUNCTION tickets_changed_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text[] := '{}';
    snapshot jsonb;
BEGIN
    IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'ticket.deleted', NEW.id, ticket_event_snapshot(NEW));
        RETURN NULL;
    END IF;
    IF NEW.subject IS DISTINCT FROM OLD.subject THEN changed := array_append(changed, 'subject'); END IF;
    IF NEW.description IS DISTINCT FROM OLD.description THEN
        changed := array_append(changed, 'description');
    END IF;
    IF NEW.priority IS DISTINCT FROM OLD.priority THEN changed := array_append(changed, 'priority'); END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN changed := array_append(changed, 'status'); END IF;
    IF NEW.assignee_id IS DISTINCT FROM OLD.assignee_id THEN
        changed := array_append(changed, 'assignee_id');
    END IF;
    IF cardinality(changed) = 0 THEN
        -- A comment's touch, a search column: nothing the API's ticket shows but its version.
        RETURN NULL;
    END IF;
    snapshot := ticket_event_snapshot(NEW);
    IF 'status' = ANY (changed) THEN
        INSERT INTO events (account_id, type, resource_id, changed_fields, snapshot)
        VALUES (NEW.account_id, 'ticket.status_changed', NEW.id, changed, snapshot);
    END IF;
    IF 'assignee_id' = ANY (changed) THEN
        INSERT INTO events (account_id, type, resource_id, changed_fields, snapshot)
        VALUES (NEW.account_id, 'ticket.assigned', NEW.id, changed, snapshot);
    END IF;
    IF changed && ARRAY['subject', 'description', 'priority'] THEN
        INSERT INTO events (account_id, type, resource_id, changed_fields, snapshot)
        VALUES (NEW.account_id, 'ticket.updated', NEW.id, changed, snapshot);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_changed_events AFTER UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_changed_events();

CREATE FUNCTION ticket_comments_created_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (account_id, type, resource_id, snapshot)
    VALUES (NEW.account_id, 'comment.created', NEW.id, to_jsonb(NEW));
    RETURN NULL;
END
$$;

CREATE TRIGGER ticket_comments_created_events AFTER INSERT ON ticket_comments
    FOR EACH ROW EXECUTE FUNCTION ticket_comments_created_events();

-- Charges: settled one way or the other, on insert (a charge the provider answered at once) or
-- update.
CREATE FUNCTION charges_settled_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_status text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
    snapshot jsonb := to_jsonb(NEW)
        - 'send_lease_token' - 'send_lease_until' - 'last_attempt_error';
BEGIN
    IF NEW.status = 'succeeded' AND old_status IS DISTINCT FROM 'succeeded' THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'charge.succeeded', NEW.id, snapshot);
    ELSIF NEW.status = 'failed' AND old_status IS DISTINCT FROM 'failed' THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'charge.failed', NEW.id, snapshot);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER charges_settled_events AFTER INSERT OR UPDATE OF status ON charges
    FOR EACH ROW EXECUTE FUNCTION charges_settled_events();

CREATE FUNCTION refunds_succeeded_events() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER refunds_succeeded_events AFTER INSERT OR UPDATE OF status ON refunds
    FOR EACH ROW EXECUTE FUNCTION refunds_succeeded_events();

CREATE FUNCTION webhook_endpoints_disabled_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'disabled' AND OLD.state = 'enabled' AND NEW.disabled_reason = 'failing' THEN
        INSERT INTO events (account_id, type, resource_id, snapshot)
        VALUES (NEW.account_id, 'endpoint.disabled', NEW.id,
                to_jsonb(NEW) - 'secret_ciphertext' - 'previous_secret_ciphertext'
                    - 'lease_token' - 'lease_until');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_endpoints_disabled_events AFTER UPDATE OF state ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_disabled_events();
