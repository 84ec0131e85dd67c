-- ListTickets (first page of 20, as a customer: their own tickets), as the service issues it
-- (captured by bench/run into bench/results/list-tickets.sql.txt): one statement for the page
-- (21 rows: one more than the page, to know whether there is a next), no transaction, no
-- authentication query. The first statement only picks a random customer of the bench account.
\set n random(1, :customers)
SELECT user_id, account_id FROM bench_customers WHERE n = :n \gset
SELECT "tickets"."id", "tickets"."account_id", "tickets"."subject", "tickets"."description", "tickets"."priority", "tickets"."status", "tickets"."requester_id", "tickets"."assignee_id", "tickets"."created_at", "tickets"."updated_at", "tickets"."version", "tickets"."deleted_at", "users"."email" FROM ("tickets" INNER JOIN "users" ON ("users"."id" = "tickets"."requester_id")) WHERE ((("tickets"."account_id" = :account_id) AND ("tickets"."deleted_at" IS NULL)) AND ("tickets"."requester_id" = :user_id)) ORDER BY "tickets"."created_at" DESC, "tickets"."id" DESC LIMIT 21;
