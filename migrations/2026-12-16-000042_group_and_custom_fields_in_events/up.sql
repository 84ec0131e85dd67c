-- Groups and custom fields (issue 68, docs/tickets.md): a ticket's event snapshot carries its group
-- and its custom field values. A change of group is a `ticket.assigned` event, as a change of
-- assignee is, naming `group_id` (and `assignee_id` when both change) among its changed fields; a
-- change of custom field values is a `ticket.updated` event naming `custom_fields`.
CREATE OR REPLACE FUNCTION ticket_event_snapshot(t tickets) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'account_id', t.account_id, 'subject', t.subject,
        'description', t.description, 'priority', t.priority, 'status', t.status,
        'requester_id', t.requester_id, 'assignee_id', t.assignee_id,
        'created_at', t.created_at, 'updated_at', t.updated_at, 'version', t.version,
        'deleted_at', t.deleted_at, 'tags', t.tags,
        'custom_fields', t.custom_fields, 'group_id', t.group_id,
        'requester_email', (SELECT email FROM users WHERE users.id = t.requester_id))
$$;

CREATE OR REPLACE FUNCTION tickets_changed_events() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF NEW.group_id IS DISTINCT FROM OLD.group_id THEN
        changed := array_append(changed, 'group_id');
    END IF;
    IF NEW.tags IS DISTINCT FROM OLD.tags THEN changed := array_append(changed, 'tags'); END IF;
    IF NEW.custom_fields IS DISTINCT FROM OLD.custom_fields THEN
        changed := array_append(changed, 'custom_fields');
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
    IF changed && ARRAY['assignee_id', 'group_id'] THEN
        INSERT INTO events (account_id, type, resource_id, changed_fields, snapshot)
        VALUES (NEW.account_id, 'ticket.assigned', NEW.id, changed, snapshot);
    END IF;
    IF changed && ARRAY['subject', 'description', 'priority', 'tags', 'custom_fields'] THEN
        INSERT INTO events (account_id, type, resource_id, changed_fields, snapshot)
        VALUES (NEW.account_id, 'ticket.updated', NEW.id, changed, snapshot);
    END IF;
    RETURN NULL;
END
$$;
