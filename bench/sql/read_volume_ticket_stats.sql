-- GetTicketStats over :start_date to :end_date (bench/run runs it for the last 30 and the last 365
-- days), as the service issues it (src/db/models/ticket_counts_*.rs, ticket_response_time.rs;
-- captured by bench/run --read-volume into bench/results/rv-ticket-stats-*.sql.txt): the open
-- tickets and the days from the rollups, then the exact percentiles of the time to first
-- response and to resolution over the range's tickets (index-only scans of the partial indexes
-- of migration 000017), inside the panel's read transaction (opened with its statement timeout
-- in one message; here one pipeline). :timeout is the panel's 2,000 ms for the 30 days; for the
-- year bench/run lifts it, so that pgbench shows what the statements cost where the service's
-- panel answers DEADLINE_EXCEEDED at its deadline.
\startpipeline
BEGIN;
SELECT set_config('statement_timeout', :timeout, true);
\endpipeline
SELECT status, priority, tickets FROM ticket_counts_open WHERE account_id = :account_id AND tickets <> 0 ORDER BY status, priority;
SELECT day, created, solved FROM ticket_counts_daily WHERE account_id = :account_id AND day BETWEEN :start_date AND :end_date AND (created <> 0 OR solved <> 0) ORDER BY day;
SELECT count(*) AS tickets, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds, percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds FROM (SELECT extract(epoch FROM first_agent_response_at - created_at)::float8 AS seconds FROM tickets WHERE account_id = :account_id AND first_agent_response_at IS NOT NULL AND created_at >= :start_date::date::timestamp AT TIME ZONE 'UTC' AND created_at < (:end_date::date + 1)::timestamp AT TIME ZONE 'UTC') answered;
SELECT count(*) AS tickets, percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds, percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds FROM (SELECT extract(epoch FROM solved_at - created_at)::float8 AS seconds FROM tickets WHERE account_id = :account_id AND solved_at IS NOT NULL AND solved_at >= :start_date::date::timestamp AT TIME ZONE 'UTC' AND solved_at < (:end_date::date + 1)::timestamp AT TIME ZONE 'UTC') solved;
COMMIT;
