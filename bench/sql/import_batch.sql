-- One batch of ImportTickets (IMPORT_BATCH_ROWS rows, one pgbench transaction), as the
-- operation worker issues it (src/service/operation_worker.rs; captured by bench/run --volume into
-- bench/results/volume-import.sql.txt): open the transaction with its statement timeout, add
-- the batch's requesters that are new (one INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING),
-- lock them all (one SELECT … FOR UPDATE), read their open tickets (the open-ticket rule) from
-- the counter the tickets' trigger keeps (requester_open_tickets, migration 000021), insert the
-- tickets with their audit records (one INSERT … SELECT FROM unnest(…) with eleven arrays: the
-- tags, group and custom field values, none in the bench's file, are one empty text, one null
-- and one empty object a ticket, as the service binds them; a file naming groups adds the two
-- FOR KEY SHARE reads of its groups and memberships, not measured here), move
-- the checkpoint (the lease-guarded UPDATE of the operation), commit. Run with one client and
-- one transaction per batch, as one worker runs one import.
--
-- The rows are the import file's (bench/volume.sh loads it into bench_import_rows and cuts it
-- into bench_import_batches beforehand, with UUIDv7 ids made by bench_uuid_v7()). What the
-- service does in Rust between statements pgbench does in SQL, and pays for in the database:
-- the batch's arrays are fetched by one statement (the service parsed the file once), and the
-- requesters' ids are put in row order, with each row's audit changes, by one more (the service
-- maps them from the locking SELECT's answer). Both show in bench/results/pg-volume-import.sql.txt.
SELECT nextval('bench_import_batch') AS batch \gset
SELECT ids, subjects, descriptions, priorities, assignee_ids, activity_ids, emails, new_user_ids, (batch - 1) * :batch_rows AS from_rows, least(batch * :batch_rows, :rows) AS to_rows FROM bench_import_batches WHERE batch = :batch \gset
BEGIN;
SELECT set_config('statement_timeout', '30000', true);
INSERT INTO users (id, account_id, email, display_name, role) SELECT id, :account_id::uuid, email, '', 'customer' FROM unnest(:new_user_ids::uuid[], :emails::text[]) AS t(id, email) ORDER BY email ON CONFLICT (account_id, email) DO NOTHING;
SELECT id, email FROM users WHERE account_id = :account_id::uuid AND email = ANY(:emails::text[]) ORDER BY id FOR UPDATE;
SELECT array_agg(u.id ORDER BY r.n)::text AS requester_ids, array_agg(DISTINCT u.id)::text AS requester_set, array_agg(jsonb_build_object('priority', jsonb_build_object('old', NULL, 'new', r.priority), 'requester_id', jsonb_build_object('old', NULL, 'new', u.id), 'status', jsonb_build_object('old', NULL, 'new', 'new'), 'subject', jsonb_build_object('old', NULL, 'new', r.subject)) ORDER BY r.n)::text AS changes FROM bench_import_rows r JOIN users u ON u.account_id = :account_id::uuid AND u.email = r.requester_email WHERE r.batch = :batch \gset
SELECT requester_id, tickets FROM requester_open_tickets WHERE account_id = :account_id::uuid AND requester_id = ANY(:requester_set::uuid[]);
WITH input AS (SELECT * FROM unnest(:ids::uuid[], :subjects::text[], :descriptions::text[], :priorities::text[], :requester_ids::uuid[], :assignee_ids::uuid[], :activity_ids::uuid[], :changes::jsonb[], array_fill(''::text, ARRAY[cardinality(:ids::uuid[])]), array_fill(NULL::uuid, ARRAY[cardinality(:ids::uuid[])]), array_fill('{}'::jsonb, ARRAY[cardinality(:ids::uuid[])])) AS t(id, subject, description, priority, requester_id, assignee_id, activity_id, changes, tags, group_id, custom_fields)), written AS (INSERT INTO ticket_activities (id, account_id, ticket_id, actor_user_id, actor_api_key_id, action, changes) SELECT activity_id, :account_id::uuid, id, :admin_id::uuid, NULL, 'created', changes FROM input) INSERT INTO tickets (id, account_id, subject, description, priority, status, requester_id, assignee_id, tags, group_id, custom_fields) SELECT id, :account_id::uuid, subject, description, priority, 'new', requester_id, assignee_id, string_to_array(tags, ','), group_id, custom_fields FROM input;
UPDATE operations SET rows_read = :to_rows, rows_imported = rows_imported + (:to_rows::bigint - :from_rows::bigint), rows_failed = rows_failed + 0, row_errors = CASE WHEN jsonb_array_length(row_errors) >= 100 THEN row_errors ELSE (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]') FROM jsonb_array_elements(row_errors || '[]'::jsonb) WITH ORDINALITY AS t(e, n) WHERE n <= 100) END, lease_expires_at = now() + 30000 * interval '1 millisecond', updated_at = now() WHERE id = :operation_id::uuid AND lease_owner = :worker::uuid AND rows_read = :from_rows AND state = 'running' RETURNING cancel_requested;
COMMIT;
