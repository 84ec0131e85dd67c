-- CreateTicket as the admin naming a requester never seen before, with an idempotency key: the
-- service's whole transaction as captured by bench/run (bench/results/create-ticket.sql.txt), with
-- no authentication query (the caller's state comes from Redis), in the service's eight round
-- trips: open the transaction with its statement and lock timeouts (the service sends them in
-- one simple-protocol message; here one pipeline), claim the idempotency key, lift the lock
-- timeout and open a savepoint (one message; one pipeline), find-or-insert the requester by
-- email (the upsert locks their row), count their open tickets (the open-ticket limit), insert
-- the ticket with its audit record in one statement (the service makes the ticket's id itself;
-- here one more CTE does, in the same statement), store the outcome for replays, commit. Ids are time-ordered
-- (UUIDv7, as the service makes them) by bench_uuid_v7(), which bench/run creates.
\set serial random(1, 1000000000000)
\startpipeline
BEGIN;
SELECT set_config('statement_timeout', '9990', true), set_config('lock_timeout', '100', true);
\endpipeline
INSERT INTO "idempotency_keys" ("id", "caller", "rpc", "key", "request_hash", "status_code", "expires_at") VALUES (bench_uuid_v7(), 'user:' || :admin_id, '/supportdesk.v1.TicketService/CreateTicket', 'pg-' || :run || '-' || :client_id || '-' || :serial, sha256(:serial::bytea), 10, now() + interval '1 day') ON CONFLICT DO NOTHING RETURNING "idempotency_keys"."id" \gset idem_
\startpipeline
SELECT set_config('lock_timeout', '0', true);
SAVEPOINT work;
\endpipeline
INSERT INTO "users" ("id", "account_id", "email", "display_name", "role", "password_hash") VALUES (bench_uuid_v7(), :account_id, 'pg-' || :run || '-' || :client_id || '-' || :serial || '@load.example.com', '', 'customer', DEFAULT) ON CONFLICT ("account_id", "email") DO UPDATE SET "email" = excluded."email" RETURNING "users"."id", "users"."account_id", "users"."email", "users"."display_name", "users"."role", "users"."created_at", "users"."updated_at", "users"."password_hash", "users"."active" \gset requester_
SELECT COUNT(*) FROM "tickets" WHERE (((("tickets"."account_id" = :account_id) AND ("tickets"."requester_id" = :requester_id)) AND ("tickets"."deleted_at" IS NULL)) AND ("tickets"."status" != ALL('{solved,closed}')));
WITH new_ticket AS (SELECT bench_uuid_v7() AS id), written AS (INSERT INTO "ticket_activities" ("id", "account_id", "ticket_id", "actor_user_id", "actor_api_key_id", "action", "changes") SELECT bench_uuid_v7(), :account_id::uuid, new_ticket.id, :admin_id::uuid, NULL, 'created', '{"subject": {"new": "Load ticket"}, "description": {"new": "Created by pgbench."}, "priority": {"new": "normal"}, "status": {"new": "new"}}'::jsonb FROM new_ticket) INSERT INTO "tickets" ("id", "account_id", "subject", "description", "priority", "status", "requester_id", "assignee_id") SELECT new_ticket.id, :account_id::uuid, 'Load ticket ' || :serial, 'Created by pgbench.', 'normal', 'new', :requester_id::uuid, NULL FROM new_ticket RETURNING "tickets"."id", "tickets"."account_id", "tickets"."subject", "tickets"."description", "tickets"."priority", "tickets"."status", "tickets"."requester_id", "tickets"."assignee_id", "tickets"."created_at", "tickets"."updated_at", "tickets"."version", "tickets"."deleted_at";
UPDATE "idempotency_keys" SET "status_code" = 0, "status_message" = '', "status_details" = NULL, "response_body" = repeat('x', 300)::bytea, "response_metadata" = '{}' WHERE ("idempotency_keys"."id" = :idem_id);
COMMIT;
