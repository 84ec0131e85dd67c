-- GetTicket on a cache miss, as the service issued it (captured with pg_stat_statements by
-- bench/run into bench/results/get-ticket-miss.sql.txt): a pool check-out check and the caller's
-- user row (authentication), then a check-out check and the ticket in a read transaction with the
-- request's statement_timeout. The first statement only picks a random ticket and its requester
-- (bench/run numbers them in bench_tickets); the service has the ids in the request.
\set n random(1, :tickets)
SELECT ticket_id, account_id, requester_id FROM bench_tickets WHERE n = :n \gset
SELECT 1;
SELECT "users"."id", "users"."account_id", "users"."email", "users"."display_name", "users"."role", "users"."created_at", "users"."updated_at", "users"."password_hash", "users"."active" FROM "users" WHERE (("users"."account_id" = :'account_id') AND ("users"."id" = :'requester_id')) LIMIT 1;
SELECT 1;
BEGIN;
SELECT set_config('statement_timeout', '9990', true);
SELECT "tickets"."id", "tickets"."account_id", "tickets"."subject", "tickets"."description", "tickets"."priority", "tickets"."status", "tickets"."requester_id", "tickets"."assignee_id", "tickets"."created_at", "tickets"."updated_at", "tickets"."version", "tickets"."deleted_at", "users"."email" FROM ("tickets" INNER JOIN "users" ON ("users"."id" = "tickets"."requester_id")) WHERE ((("tickets"."account_id" = :'account_id') AND ("tickets"."id" = :'ticket_id')) AND ("tickets"."deleted_at" IS NULL)) LIMIT 1;
COMMIT;
