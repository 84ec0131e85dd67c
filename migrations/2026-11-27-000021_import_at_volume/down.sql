DROP TRIGGER tickets_track_solved_on_insert ON tickets;
CREATE TRIGGER tickets_track_solved_on_insert BEFORE INSERT ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_track_solved();

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
    ELSE
        -- A deleted row (tickets are soft-deleted; this is for psql): it no longer waits.
        INSERT INTO ticket_counts_open AS o (account_id, status, priority, tickets)
        SELECT account_id, status, priority, -count(*) FROM old_rows
        WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (account_id, status, priority)
        DO UPDATE SET tickets = o.tickets + excluded.tickets;
    END IF;
    RETURN NULL;
END
$$;
DROP TABLE requester_open_tickets;
