-- GetTicket on a cache miss, as the service issues it (captured with pg_stat_statements by
-- bench/run into bench/results/get-ticket-miss.sql.txt): one statement on a pooled connection, no
-- transaction, no authentication query (the caller's state comes from Redis). The first
-- statement only picks a random ticket (bench/run numbers them in bench_tickets); the service
-- has the ids in the request.
\set n random(1, :tickets)
SELECT ticket_id, account_id FROM bench_tickets WHERE n = :n \gset
SELECT "tickets"."id", "tickets"."account_id", "tickets"."subject", "tickets"."description", "tickets"."priority", "tickets"."status", "tickets"."requester_id", "tickets"."assignee_id", "tickets"."created_at", "tickets"."updated_at", "tickets"."version", "tickets"."deleted_at", "users"."email" FROM ("tickets" INNER JOIN "users" ON ("users"."id" = "tickets"."requester_id")) WHERE ((("tickets"."account_id" = :account_id) AND ("tickets"."id" = :ticket_id)) AND ("tickets"."deleted_at" IS NULL)) LIMIT 1;
