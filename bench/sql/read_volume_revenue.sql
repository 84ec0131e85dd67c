-- GetRevenue by day over the last 365 days (:start_date to :end_date), as the service issues it
-- (src/db/models/revenue_daily.rs; captured by bench/run --read-volume into
-- bench/results/rv-revenue.sql.txt): the rollup's rows of the range, O(days × currencies)
-- whatever the number of charges. The service reads it inside the panel's read transaction,
-- which opens with its statement timeout in one message (here one pipeline): the same three
-- round trips.
\startpipeline
BEGIN;
SELECT set_config('statement_timeout', '2000', true);
\endpipeline
SELECT currency, day, charge_count, gross_minor, refunded_minor FROM revenue_daily WHERE account_id = :account_id AND day BETWEEN :start_date AND :end_date AND (charge_count <> 0 OR gross_minor <> 0 OR refunded_minor <> 0) ORDER BY currency, day;
COMMIT;
