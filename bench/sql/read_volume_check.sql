-- bench/run --read-volume, step 4 of 4 (read_volume_seed.sql says the whole): the rollups the
-- triggers kept must equal a recount of the seeded base tables, or the bench stops (its figures
-- would be for wrong data). Revenue: charges and gross per currency and creation day; refunds
-- per currency (the insert trigger books them on the day they were recorded). Tickets: created
-- per creation day, solved per solving day, unresolved per status and priority; the
-- response-time histograms per measure, period (day and month) and bucket.
\set ON_ERROR_STOP 1
-- psql does not substitute variables inside a DO block: the account goes through a setting.
SELECT set_config('bench.account_id', :'account_id', false) \g /dev/null
DO $$
DECLARE
    account uuid := current_setting('bench.account_id')::uuid;
    wrong bigint;
BEGIN
    SELECT count(*) INTO wrong FROM (
        SELECT currency, day, sum(charge_count) AS n, sum(gross_minor) AS gross
        FROM revenue_daily WHERE account_id = account GROUP BY 1, 2 HAVING sum(charge_count) <> 0
    ) rolled FULL JOIN (
        SELECT currency, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n,
               sum(amount_minor) AS gross
        FROM charges
        WHERE account_id = account AND status IN ('succeeded', 'partially_refunded', 'refunded')
        GROUP BY 1, 2
    ) counted USING (currency, day)
    WHERE rolled.n IS DISTINCT FROM counted.n OR rolled.gross IS DISTINCT FROM counted.gross;
    IF wrong <> 0 THEN
        RAISE EXCEPTION 'revenue_daily differs from the charges on % currency-days', wrong;
    END IF;

    SELECT count(*) INTO wrong FROM (
        SELECT currency, sum(refunded_minor) AS refunded
        FROM revenue_daily WHERE account_id = account GROUP BY 1
    ) rolled FULL JOIN (
        SELECT currency, sum(amount_refunded_minor) AS refunded
        FROM charges WHERE account_id = account GROUP BY 1
    ) counted USING (currency)
    WHERE rolled.refunded IS DISTINCT FROM counted.refunded;
    IF wrong <> 0 THEN
        RAISE EXCEPTION 'revenue_daily refunds differ from the charges in % currencies', wrong;
    END IF;

    SELECT count(*) INTO wrong FROM (
        SELECT day, created, solved FROM ticket_counts_daily
        WHERE account_id = account AND (created <> 0 OR solved <> 0)
    ) rolled FULL JOIN (
        SELECT day, sum(created) AS created, sum(solved) AS solved FROM (
            SELECT (created_at AT TIME ZONE 'UTC')::date AS day, 1 AS created, 0 AS solved
            FROM tickets WHERE account_id = account
            UNION ALL
            SELECT (solved_at AT TIME ZONE 'UTC')::date, 0, 1
            FROM tickets WHERE account_id = account AND solved_at IS NOT NULL
        ) deltas GROUP BY 1
    ) counted USING (day)
    WHERE rolled.created IS DISTINCT FROM counted.created
       OR rolled.solved IS DISTINCT FROM counted.solved;
    IF wrong <> 0 THEN
        RAISE EXCEPTION 'ticket_counts_daily differs from the tickets on % days', wrong;
    END IF;

    SELECT count(*) INTO wrong FROM (
        SELECT status, priority, tickets FROM ticket_counts_open
        WHERE account_id = account AND tickets <> 0
    ) rolled FULL JOIN (
        SELECT status, priority, count(*) AS tickets FROM tickets
        WHERE account_id = account AND deleted_at IS NULL AND status IN ('new', 'open', 'pending')
        GROUP BY 1, 2
    ) counted USING (status, priority)
    WHERE rolled.tickets IS DISTINCT FROM counted.tickets;
    IF wrong <> 0 THEN
        RAISE EXCEPTION 'ticket_counts_open differs from the tickets in % cells', wrong;
    END IF;
    SELECT count(*) INTO wrong FROM (
        SELECT measure, period, starts_on, bucket, tickets::bigint AS tickets
        FROM ticket_response_histograms WHERE account_id = account AND tickets <> 0
    ) rolled FULL JOIN (
        SELECT measure, periods.period, periods.starts_on, bucket, count(*) AS tickets FROM (
            SELECT 'first_response' AS measure, (created_at AT TIME ZONE 'UTC')::date AS day,
                   ticket_response_bucket(first_agent_response_at - created_at) AS bucket
            FROM tickets WHERE account_id = account AND first_agent_response_at IS NOT NULL
            UNION ALL
            SELECT 'resolution', (solved_at AT TIME ZONE 'UTC')::date,
                   ticket_response_bucket(solved_at - created_at)
            FROM tickets WHERE account_id = account AND solved_at IS NOT NULL
        ) durations
        CROSS JOIN LATERAL (VALUES ('day', durations.day),
                                   ('month', date_trunc('month', durations.day)::date))
            AS periods (period, starts_on)
        GROUP BY 1, 2, 3, 4
    ) counted USING (measure, period, starts_on, bucket)
    WHERE rolled.tickets IS DISTINCT FROM counted.tickets;
    IF wrong <> 0 THEN
        RAISE EXCEPTION 'ticket_response_histograms differs from the tickets in % cells', wrong;
    END IF;
    RAISE NOTICE 'the rollups equal a recount of % tickets and % charges',
        (SELECT count(*) FROM tickets WHERE account_id = account),
        (SELECT count(*) FROM charges WHERE account_id = account);
END
$$;
