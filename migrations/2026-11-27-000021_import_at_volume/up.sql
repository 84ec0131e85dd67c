-- ImportTickets at volume (docs/operations.md, "The open-ticket rule"; docs/performance.md,
-- "Tickets at volume"): two per-row costs of writing tickets taken out, every guarantee kept.
--
-- * requester_open_tickets: each requester's unresolved (new, open, pending), not deleted
--   tickets, kept by the tickets' statement-level rollup trigger in the transaction of the change
--   that moves it, like ticket_counts_open. An import batch reads its requesters' counts here
--   (one key lookup each) instead of counting their tickets, which grew with every batch: by the
--   end of a 100,000-row import the count read about 100,000 index entries a batch. Tickets
--   created, solved, reopened, deleted or moved to another requester between two batches move
--   the counter in their own transaction, so the next batch (which reads it after locking its
--   requesters, as before) sees them. No foreign key to users: a key check on a counter's first
--   row would share-lock the user while CreateTicket may hold it for update and wait for that
--   very counter row (a deadlock); every counter row comes from tickets, which reference users.
-- * tickets_track_solved_on_insert fires only for rows it changes (solved or closed, or
--   carrying a solved_at): for an unresolved ticket without one it set solved_at to NULL, which
--   it already was, at the price of a PL/pgSQL call per inserted row.

CREATE TABLE requester_open_tickets (
    account_id uuid NOT NULL REFERENCES accounts (id),
    requester_id uuid NOT NULL,
    -- No CHECK (tickets >= 0): a decrement arrives as an upsert whose proposed row is negative.
    tickets bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, requester_id)
);

INSERT INTO requester_open_tickets (account_id, requester_id, tickets)
SELECT account_id, requester_id, count(*)
FROM tickets
WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
GROUP BY account_id, requester_id;

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

DROP TRIGGER tickets_track_solved_on_insert ON tickets;
CREATE TRIGGER tickets_track_solved_on_insert BEFORE INSERT ON tickets
    FOR EACH ROW
    WHEN (NEW.status IN ('solved', 'closed') OR NEW.solved_at IS NOT NULL)
    EXECUTE FUNCTION tickets_track_solved();
