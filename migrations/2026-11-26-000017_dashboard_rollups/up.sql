-- The dashboard's rollups (docs/dashboard.md): kept by triggers in the transaction of the change
-- that moves them, so every writer (the API, the completer, webhooks, the reconciler, a bulk
-- import, psql) keeps them right without knowing they exist. The triggers are statement-level
-- with transition tables: a multi-row INSERT or UPDATE costs one aggregated upsert per rollup,
-- its rows taken in key order (so two writers never lock the same rollup rows in opposite
-- orders), and a statement that moves nothing (a lease renewal, a version bump) writes nothing.
-- Days are UTC days.

-- Revenue per account, currency and day. A charge counts (charge_count, gross_minor) on the day
-- it was created once it has succeeded (succeeded, partially_refunded, refunded); a refund counts
-- (refunded_minor) on the day it is recorded on the charge. Net = gross - refunded. Money stays
-- in minor units of one currency: rows of different currencies are never added together.
CREATE TABLE revenue_daily (
    account_id uuid NOT NULL REFERENCES accounts (id),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    day date NOT NULL,
    charge_count bigint NOT NULL DEFAULT 0,
    gross_minor bigint NOT NULL DEFAULT 0,
    refunded_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, currency, day)
);
-- GetRevenue reads an account's range across currencies.
CREATE INDEX revenue_daily_account_day_idx ON revenue_daily (account_id, day, currency);

-- Tickets created and solved per account and day. "Solved" counts each move into solved or
-- closed from an unresolved status (a ticket solved, reopened and solved again counts twice).
CREATE TABLE ticket_counts_daily (
    account_id uuid NOT NULL REFERENCES accounts (id),
    day date NOT NULL,
    created bigint NOT NULL DEFAULT 0,
    solved bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
);

-- Unresolved (new, open, pending), not deleted tickets per account, status and priority.
CREATE TABLE ticket_counts_open (
    account_id uuid NOT NULL REFERENCES accounts (id),
    status text NOT NULL CHECK (status IN ('new', 'open', 'pending')),
    priority text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    -- No CHECK (tickets >= 0): a decrement arrives as an upsert whose proposed row is negative.
    tickets bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, status, priority)
);

-- Per ticket: when an agent (or an agent's API key) first answered in public, and when it was
-- last solved (NULL while unresolved). The time-to-first-response and time-to-resolution
-- percentiles are computed over these with percentile_cont (exact), through the indexes below.
ALTER TABLE tickets
    ADD COLUMN first_agent_response_at timestamptz,
    ADD COLUMN solved_at timestamptz;

-- Backfill, before the triggers exist.
UPDATE tickets t SET solved_at = coalesce(
    (SELECT max(a.created_at) FROM ticket_activities a
      WHERE a.account_id = t.account_id AND a.ticket_id = t.id
        AND a.action IN ('resolved', 'closed')),
    t.updated_at)
WHERE t.status IN ('solved', 'closed');

UPDATE tickets t SET first_agent_response_at = first.at
FROM (
    SELECT c.account_id, c.ticket_id, min(c.created_at) AS at
    FROM ticket_comments c
    LEFT JOIN users u ON u.id = c.author_user_id
    LEFT JOIN api_keys k ON k.id = c.author_api_key_id
    WHERE c.public AND (u.role IN ('agent', 'admin') OR k.roles && ARRAY['agent', 'admin'])
    GROUP BY c.account_id, c.ticket_id
) first
WHERE t.account_id = first.account_id AND t.id = first.ticket_id;

INSERT INTO revenue_daily (account_id, currency, day, charge_count, gross_minor, refunded_minor)
SELECT account_id, currency, day, sum(n), sum(gross), sum(refunded)
FROM (
    SELECT account_id, currency, (created_at AT TIME ZONE 'UTC')::date AS day,
           1 AS n, amount_minor AS gross, 0::bigint AS refunded
    FROM charges WHERE status IN ('succeeded', 'partially_refunded', 'refunded')
    UNION ALL
    -- The day of a past refund is not recorded on the charge: its last update stands for it.
    SELECT account_id, currency, (updated_at AT TIME ZONE 'UTC')::date, 0, 0, amount_refunded_minor
    FROM charges WHERE amount_refunded_minor > 0
) deltas
GROUP BY account_id, currency, day;

INSERT INTO ticket_counts_daily (account_id, day, created, solved)
SELECT account_id, day, sum(created), sum(solved)
FROM (
    SELECT account_id, (created_at AT TIME ZONE 'UTC')::date AS day, 1 AS created, 0 AS solved
    FROM tickets
    UNION ALL
    SELECT account_id, (solved_at AT TIME ZONE 'UTC')::date, 0, 1
    FROM tickets WHERE solved_at IS NOT NULL
) deltas
GROUP BY account_id, day;

INSERT INTO ticket_counts_open (account_id, status, priority, tickets)
SELECT account_id, status, priority, count(*)
FROM tickets
WHERE deleted_at IS NULL AND status IN ('new', 'open', 'pending')
GROUP BY account_id, status, priority;

-- GetTicketStats' percentiles: tickets created in a range with their first answer, tickets
-- solved in a range with their creation time (index-only scans).
CREATE INDEX tickets_first_response_idx ON tickets (account_id, created_at)
    INCLUDE (first_agent_response_at) WHERE first_agent_response_at IS NOT NULL;
CREATE INDEX tickets_solved_idx ON tickets (account_id, solved_at)
    INCLUDE (created_at) WHERE solved_at IS NOT NULL;

-- GetRecentActivity: an account's records of both trails, newest first.
CREATE INDEX ticket_activities_account_created_idx
    ON ticket_activities (account_id, created_at DESC, id DESC);
CREATE INDEX charge_activities_account_created_idx
    ON charge_activities (account_id, created_at DESC, id DESC);

-- solved_at follows the status: set when a ticket moves into solved or closed from an
-- unresolved status (kept when an inserter supplies it, as an import of old tickets does),
-- cleared when it is reopened.
CREATE FUNCTION tickets_track_solved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('solved', 'closed') THEN
        IF TG_OP = 'INSERT' THEN
            NEW.solved_at := coalesce(NEW.solved_at, now());
        ELSIF OLD.status NOT IN ('solved', 'closed') THEN
            NEW.solved_at := now();
        END IF;
    ELSE
        NEW.solved_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tickets_track_solved_on_insert BEFORE INSERT ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_track_solved();
CREATE TRIGGER tickets_track_solved_on_update BEFORE UPDATE OF status ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_track_solved();

-- The ticket rollups, from a statement's transition tables.
CREATE FUNCTION tickets_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER tickets_roll_up_inserts AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_roll_up();
CREATE TRIGGER tickets_roll_up_updates AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_roll_up();
CREATE TRIGGER tickets_roll_up_deletes AFTER DELETE ON tickets
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_roll_up();

-- Revenue, from a statement's transition tables on charges.
CREATE FUNCTION charges_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO revenue_daily AS r
            (account_id, currency, day, charge_count, gross_minor, refunded_minor)
        SELECT account_id, currency, day, sum(n), sum(gross), sum(refunded) FROM (
            SELECT account_id, currency, (created_at AT TIME ZONE 'UTC')::date AS day,
                   1 AS n, amount_minor AS gross, 0::bigint AS refunded
            FROM new_rows WHERE status IN ('succeeded', 'partially_refunded', 'refunded')
            UNION ALL
            SELECT account_id, currency, today, 0, 0, amount_refunded_minor
            FROM new_rows WHERE amount_refunded_minor <> 0
        ) deltas
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (account_id, currency, day) DO UPDATE SET
            charge_count = r.charge_count + excluded.charge_count,
            gross_minor = r.gross_minor + excluded.gross_minor,
            refunded_minor = r.refunded_minor + excluded.refunded_minor;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO revenue_daily AS r
            (account_id, currency, day, charge_count, gross_minor, refunded_minor)
        SELECT account_id, currency, day, sum(n), sum(gross), sum(refunded) FROM (
            SELECT account_id, currency, (created_at AT TIME ZONE 'UTC')::date AS day,
                   1 AS n, amount_minor AS gross, 0::bigint AS refunded
            FROM new_rows WHERE status IN ('succeeded', 'partially_refunded', 'refunded')
            UNION ALL
            SELECT account_id, currency, (created_at AT TIME ZONE 'UTC')::date,
                   -1, -amount_minor, 0
            FROM old_rows WHERE status IN ('succeeded', 'partially_refunded', 'refunded')
            UNION ALL
            SELECT n.account_id, n.currency, today, 0, 0,
                   n.amount_refunded_minor - o.amount_refunded_minor
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            WHERE n.amount_refunded_minor <> o.amount_refunded_minor
        ) deltas
        GROUP BY 1, 2, 3
        HAVING sum(n) <> 0 OR sum(gross) <> 0 OR sum(refunded) <> 0
        ORDER BY 1, 2, 3
        ON CONFLICT (account_id, currency, day) DO UPDATE SET
            charge_count = r.charge_count + excluded.charge_count,
            gross_minor = r.gross_minor + excluded.gross_minor,
            refunded_minor = r.refunded_minor + excluded.refunded_minor;
    ELSE
        INSERT INTO revenue_daily AS r
            (account_id, currency, day, charge_count, gross_minor, refunded_minor)
        SELECT account_id, currency, day, sum(n), sum(gross), sum(refunded) FROM (
            SELECT account_id, currency, (created_at AT TIME ZONE 'UTC')::date AS day,
                   -1 AS n, -amount_minor AS gross, 0::bigint AS refunded
            FROM old_rows WHERE status IN ('succeeded', 'partially_refunded', 'refunded')
            UNION ALL
            SELECT account_id, currency, today, 0, 0, -amount_refunded_minor
            FROM old_rows WHERE amount_refunded_minor <> 0
        ) deltas
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (account_id, currency, day) DO UPDATE SET
            charge_count = r.charge_count + excluded.charge_count,
            gross_minor = r.gross_minor + excluded.gross_minor,
            refunded_minor = r.refunded_minor + excluded.refunded_minor;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER charges_roll_up_inserts AFTER INSERT ON charges
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION charges_roll_up();
CREATE TRIGGER charges_roll_up_updates AFTER UPDATE ON charges
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION charges_roll_up();
CREATE TRIGGER charges_roll_up_deletes AFTER DELETE ON charges
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION charges_roll_up();

-- The first public answer of an agent (a user with the agent or admin role, or an API key
-- holding one) on a ticket.
CREATE FUNCTION ticket_comments_first_response() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tickets t SET first_agent_response_at = first.at
    FROM (
        SELECT c.account_id, c.ticket_id, min(c.created_at) AS at
        FROM new_rows c
        LEFT JOIN users u ON u.id = c.author_user_id
        LEFT JOIN api_keys k ON k.id = c.author_api_key_id
        WHERE c.public AND (u.role IN ('agent', 'admin') OR k.roles && ARRAY['agent', 'admin'])
        GROUP BY 1, 2
    ) first
    WHERE t.account_id = first.account_id AND t.id = first.ticket_id
      AND t.first_agent_response_at IS NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER ticket_comments_first_response AFTER INSERT ON ticket_comments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ticket_comments_first_response();
