-- GetTicketStats over :start_date to :end_date (bench/run runs it for the last 30 and the last 365
-- days), as the service issues it (src/db/models/ticket_counts_*.rs,
-- ticket_response_histogram.rs; captured by bench/run --read-volume into
-- bench/results/rv-ticket-stats-*.sql.txt): the open tickets and the days from the rollups, then
-- the summed buckets of the response-time histograms (migration 000019) for each measure — the
-- range's whole months [:months_from, :months_until) from their month rows, the days before and
-- after them day by day (bench/read_volume.sh computes the months as the service does) — inside
-- the panel's read transaction (opened with its statement timeout in one message; here one
-- pipeline). :timeout is the panel's 2,000 ms.
\startpipeline
BEGIN;
SELECT set_config('statement_timeout', :timeout, true);
\endpipeline
SELECT status, priority, tickets FROM ticket_counts_open WHERE account_id = :account_id AND tickets <> 0 ORDER BY status, priority;
SELECT day, created, solved FROM ticket_counts_daily WHERE account_id = :account_id AND day BETWEEN :start_date AND :end_date AND (created <> 0 OR solved <> 0) ORDER BY day;
SELECT bucket, sum(tickets) AS tickets FROM ticket_response_histograms WHERE account_id = :account_id AND measure = 'first_response' AND ((period = 'day' AND starts_on >= :start_date AND starts_on < :months_from) OR (period = 'month' AND starts_on >= :months_from AND starts_on < :months_until) OR (period = 'day' AND starts_on >= :months_until AND starts_on <= :end_date)) GROUP BY bucket HAVING sum(tickets) > 0 ORDER BY bucket;
SELECT bucket, sum(tickets) AS tickets FROM ticket_response_histograms WHERE account_id = :account_id AND measure = 'resolution' AND ((period = 'day' AND starts_on >= :start_date AND starts_on < :months_from) OR (period = 'month' AND starts_on >= :months_from AND starts_on < :months_until) OR (period = 'day' AND starts_on >= :months_until AND starts_on <= :end_date)) GROUP BY bucket HAVING sum(tickets) > 0 ORDER BY bucket;
COMMIT;
