-- GetTicketStats' response-time percentiles from a histogram rollup (docs/dashboard.md "Time to
-- first response", "Time to resolution"): per account, measure, period and log-spaced bucket of
-- the duration, how many tickets. Replaces the exact percentile_cont over every ticket of the
-- range (migration 000017's partial indexes), whose cost grew with the range's tickets: a year of
-- a busy account passed the panel's 2 s deadline. A percentile read from here costs
-- O(periods × buckets) rows and is within 4.5 % (+ 1 s) of the exact one (see
-- ticket_response_bucket).
--
-- Kept like 000017's rollups: statement-level triggers with transition tables, in the
-- transaction of the change, rows taken in key order (two writers never lock the same rollup
-- rows in opposite orders), nothing written by a statement that moves no duration.

-- The bucket of a duration: 0 below one second (and for a negative one, an import's clock skew);
-- from 1 s, 8 buckets per doubling, bucket b holding [2^((b-1)/8), 2^(b/8)) seconds, so a
-- bucket's geometric middle is within 2^(1/16) (4.4 %) of anything in it; bucket 201 holds
-- everything from 2^25 s (388 days) up. src/db/models/ticket_response_histogram.rs reads the
-- buckets back with the same constants.
CREATE FUNCTION ticket_response_bucket(elapsed interval) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE
        WHEN extract(epoch FROM elapsed) < 1 THEN 0
        ELSE least(201, 1 + floor(8 * ln(extract(epoch FROM elapsed)::float8) / ln(2::float8)))
    END;

-- measure: first_response (creation to the first public answer of an agent) counted on the UTC
-- day the ticket was created; resolution (creation to solved_at) counted on the UTC day it was
-- solved, and taken back when a reopen clears solved_at — the same tickets the exact queries
-- counted. Soft-deleted tickets stay counted, as they did; a row deleted (psql) is taken back.
-- period: each duration is counted twice, on its day and on its month (starts_on the 1st), so
-- a range reads its whole months as one row per bucket and only its partial months day by day:
-- a year is about 40 periods, not 365.
CREATE TABLE ticket_response_histograms (
    account_id uuid NOT NULL REFERENCES accounts (id),
    measure text NOT NULL CHECK (measure IN ('first_response', 'resolution')),
    period text NOT NULL CHECK (period IN ('day', 'month')),
    starts_on date NOT NULL,
    bucket smallint NOT NULL CHECK (bucket BETWEEN 0 AND 201),
    -- integer, not bigint: sum(integer) is a bigint, summed natively, where sum(bigint) is a
    -- numeric (several times slower over the rows of a year); a cell never nears 2^31 tickets.
    -- No CHECK (tickets >= 0): a decrement arrives as an upsert whose proposed row is negative.
    tickets integer NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, measure, period, starts_on, bucket)
);

-- The backfill, before the triggers exist.
INSERT INTO ticket_response_histograms (account_id, measure, period, starts_on, bucket, tickets)
SELECT account_id, measure, periods.period, periods.starts_on, bucket, count(*)
FROM (
    SELECT account_id, 'first_response' AS measure, (created_at AT TIME ZONE 'UTC')::date AS day,
           ticket_response_bucket(first_agent_response_at - created_at) AS bucket
    FROM tickets WHERE first_agent_response_at IS NOT NULL
    UNION ALL
    SELECT account_id, 'resolution', (solved_at AT TIME ZONE 'UTC')::date,
           ticket_response_bucket(solved_at - created_at)
    FROM tickets WHERE solved_at IS NOT NULL
) durations
CROSS JOIN LATERAL (VALUES ('day', durations.day),
                           ('month', date_trunc('month', durations.day)::date))
    AS periods (period, starts_on)
GROUP BY 1, 2, 3, 4, 5;

-- A statement's durations in and out, from its transition tables. An UPDATE counts only the
-- rows whose durations moved (an answer, a solve, a reopen), so the many updates that move
-- neither (a comment count, a lease, a version) cost a join and write nothing.
CREATE FUNCTION tickets_roll_up_response_times() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ticket_response_histograms AS h
            (account_id, measure, period, starts_on, bucket, tickets)
        SELECT account_id, measure, periods.period, periods.starts_on, bucket, sum(n)
        FROM (
            SELECT account_id, 'first_response' AS measure,
                   (created_at AT TIME ZONE 'UTC')::date AS day,
                   ticket_response_bucket(first_agent_response_at - created_at) AS bucket, 1 AS n
            FROM new_rows WHERE first_agent_response_at IS NOT NULL
            UNION ALL
            SELECT account_id, 'resolution', (solved_at AT TIME ZONE 'UTC')::date,
                   ticket_response_bucket(solved_at - created_at), 1
            FROM new_rows WHERE solved_at IS NOT NULL
        ) durations
        CROSS JOIN LATERAL (VALUES ('day', durations.day),
                                   ('month', date_trunc('month', durations.day)::date))
            AS periods (period, starts_on)
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (account_id, measure, period, starts_on, bucket)
        DO UPDATE SET tickets = h.tickets + excluded.tickets;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO ticket_response_histograms AS h
            (account_id, measure, period, starts_on, bucket, tickets)
        SELECT account_id, measure, periods.period, periods.starts_on, bucket, sum(n)
        FROM (
            WITH moved AS (
                SELECT o.account_id AS old_account_id, o.created_at AS old_created_at,
                       o.first_agent_response_at AS old_first_response_at,
                       o.solved_at AS old_solved_at,
                       n.account_id, n.created_at, n.first_agent_response_at, n.solved_at
                FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (n.account_id, n.created_at, n.first_agent_response_at, n.solved_at)
                      IS DISTINCT FROM
                      (o.account_id, o.created_at, o.first_agent_response_at, o.solved_at)
            )
            SELECT account_id, 'first_response' AS measure,
                   (created_at AT TIME ZONE 'UTC')::date AS day,
                   ticket_response_bucket(first_agent_response_at - created_at) AS bucket, 1 AS n
            FROM moved WHERE first_agent_response_at IS NOT NULL
            UNION ALL
            SELECT old_account_id, 'first_response', (old_created_at AT TIME ZONE 'UTC')::date,
                   ticket_response_bucket(old_first_response_at - old_created_at), -1
            FROM moved WHERE old_first_response_at IS NOT NULL
            UNION ALL
            SELECT account_id, 'resolution', (solved_at AT TIME ZONE 'UTC')::date,
                   ticket_response_bucket(solved_at - created_at), 1
            FROM moved WHERE solved_at IS NOT NULL
            UNION ALL
            SELECT old_account_id, 'resolution', (old_solved_at AT TIME ZONE 'UTC')::date,
                   ticket_response_bucket(old_solved_at - old_created_at), -1
            FROM moved WHERE old_solved_at IS NOT NULL
        ) durations
        CROSS JOIN LATERAL (VALUES ('day', durations.day),
                                   ('month', date_trunc('month', durations.day)::date))
            AS periods (period, starts_on)
        GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (account_id, measure, period, starts_on, bucket)
        DO UPDATE SET tickets = h.tickets + excluded.tickets;
    ELSE
        INSERT INTO ticket_response_histograms AS h
            (account_id, measure, period, starts_on, bucket, tickets)
        SELECT account_id, measure, periods.period, periods.starts_on, bucket, -sum(n)
        FROM (
            SELECT account_id, 'first_response' AS measure,
                   (created_at AT TIME ZONE 'UTC')::date AS day,
                   ticket_response_bucket(first_agent_response_at - created_at) AS bucket, 1 AS n
            FROM old_rows WHERE first_agent_response_at IS NOT NULL
            UNION ALL
            SELECT account_id, 'resolution', (solved_at AT TIME ZONE 'UTC')::date,
                   ticket_response_bucket(solved_at - created_at), 1
            FROM old_rows WHERE solved_at IS NOT NULL
        ) durations
        CROSS JOIN LATERAL (VALUES ('day', durations.day),
                                   ('month', date_trunc('month', durations.day)::date))
            AS periods (period, starts_on)
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (account_id, measure, period, starts_on, bucket)
        DO UPDATE SET tickets = h.tickets + excluded.tickets;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_roll_up_response_times_inserts AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_roll_up_response_times();
CREATE TRIGGER tickets_roll_up_response_times_updates AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_roll_up_response_times();
CREATE TRIGGER tickets_roll_up_response_times_deletes AFTER DELETE ON tickets
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_roll_up_response_times();

-- The exact percentiles' partial indexes have no reader left.
DROP INDEX tickets_first_response_idx;
DROP INDEX tickets_solved_idx;
