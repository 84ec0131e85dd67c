-- Tickets on hold go back to open (the status that existed before), counted again as such by the
-- rollup still in place; the records of the waiting statuses become updates.
UPDATE tickets SET status = 'open' WHERE status = 'on_hold';
UPDATE ticket_activities SET action = 'updated' WHERE action IN ('marked_pending', 'put_on_hold');

CREATE OR REPLACE FUNCTION tickets_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ticket_counts_open AS o (account_id, status, priority, tickets)
        SELECT account_id, status, priority, count(*) FROM new_rows
        WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (account_id, status, priority)
        DO UPDATE SET tickets = o.tickets + excluded.tickets;

        INSERT INTO ticket_counts_daily AS d (account_id, day, created, solved)
        SELECT account_id, day, sum(created), sum(solved) FROM (
            SELECT account_id, (created_at AT TIME ZONE 'UTC')::date AS day, 1 AS created,
                   0 AS solved
            FROM new_rows
            UNION ALL
            SELECT account_id, (solved_at AT TIME ZONE 'UTC')::date, 0, 1
            FROM new_rows WHERE solved_at IS NOT NULL
        ) deltas
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (account_id, day)
        DO UPDATE SET created = d.created + excluded.created, solved = d.solved + excluded.solved;

        INSERT INTO requester_open_tickets AS r (account_id, requester_id, tickets)
        SELECT account_id, requester_id, count(*) FROM new_rows
        WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (account_id, requester_id)
        DO UPDATE SET tickets = r.tickets + excluded.tickets;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ticket_counts_open AS o (account_id, status, priority, tickets)
        SELECT account_id, status, priority, sum(n) FROM (
            SELECT account_id, status, priority, 1 AS n FROM new_rows
            WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
            UNION ALL
            SELECT account_id, status, priority, -1 FROM old_rows
            WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        ) deltas
        GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (account_id, status, priority)
        DO UPDATE SET tickets = o.tickets + excluded.tickets;

        INSERT INTO ticket_counts_daily AS d (account_id, day, created, solved)
        SELECT n.account_id, (n.solved_at AT TIME ZONE 'UTC')::date, 0, count(*)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.solved_at IS NOT NULL AND o.solved_at IS NULL
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (account_id, day)
        DO UPDATE SET solved = d.solved + excluded.solved;

        -- Most updates (an edit, a comment's search text, a version bump) move no count and
        -- write nothing here.
        INSERT INTO requester_open_tickets AS r (account_id, requester_id, tickets)
        SELECT account_id, requester_id, sum(n) FROM (
            SELECT account_id, requester_id, 1 AS n FROM new_rows
            WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
            UNION ALL
            SELECT account_id, requester_id, -1 FROM old_rows
            WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        ) deltas
        GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2
        ON CONFLICT (account_id, requester_id)
        DO UPDATE SET tickets = r.tickets + excluded.tickets;
    ELSE
        -- A deleted row (tickets are soft-deleted; this is for psql): it no longer waits.
        INSERT INTO ticket_counts_open AS o (account_id, status, priority, tickets)
        SELECT account_id, status, priority, -count(*) FROM old_rows
        WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (account_id, status, priority)
        DO UPDATE SET tickets = o.tickets + excluded.tickets;

        INSERT INTO requester_open_tickets AS r (account_id, requester_id, tickets)
        SELECT account_id, requester_id, -count(*) FROM old_rows
        WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (account_id, requester_id)
        DO UPDATE SET tickets = r.tickets + excluded.tickets;
    END IF;
    RETURN NULL;
END
$$;

DELETE FROM ticket_counts_open WHERE status = 'on_hold';

ALTER TABLE ticket_activities DROP CONSTRAINT ticket_activities_action_check;
ALTER TABLE ticket_activities ADD CONSTRAINT ticket_activities_action_check CHECK (action IN (
    'created', 'updated', 'assigned', 'resolved', 'reopened', 'closed', 'commented', 'deleted'
));

ALTER TABLE ticket_counts_open DROP CONSTRAINT ticket_counts_open_status_check;
ALTER TABLE ticket_counts_open ADD CONSTRAINT ticket_counts_open_status_check
    CHECK (status IN ('new', 'open', 'pending'));

ALTER TABLE tickets DROP CONSTRAINT tickets_status_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_status_check
    CHECK (status IN ('new', 'open', 'pending', 'solved', 'closed'));
