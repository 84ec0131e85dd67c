# shellcheck shell=bash disable=SC2154 # the variables are bench/run's, which sources this file
# Tickets at volume (issue 28, items 6 and 8): sourced by `bench/run --volume` once the
# service, its Envoy and the bench's PostgreSQL run; uses bench/run's variables and functions
# (say, start_service, psql_bench, loadgen_bin, ...). Writes bench/results/volume-*.json and
# bench/results/volume.md. bench/README.md ("Tickets at volume") says what each step measures.
#
#   1. import:  ImportTickets of VOLUME_ROWS rows (one CSV, inline), polled until done
#   2. pgbench: the same rows through the importer's own statements, batch by batch, one client;
#      then the ceiling: the same rows copied straight into tickets and ticket_activities, and
#      what it is made of: the same COPY with parts of a ticket write removed, in a scratch database
#   3. create:  the same rows as one CreateTicket each, from 8 clients
#   4. export:  those tickets by ExportTickets over gRPC and over REST (Envoy), the service's
#               RSS read every 10 ms; then COPY (the same select) TO STDOUT through psql
#   5. GetTicket at a fixed rate without an import, then while the same file is imported again
#   6. bytes on the wire of a page of 100 tickets (loadgen wire-bytes)

readonly VOLUME_REQUESTERS=1000
readonly VOLUME_CLIENTS=8          # CreateTicket's concurrent clients (one connection each)
readonly VOLUME_BATCH_ROWS=1000    # the service's IMPORT_BATCH_ROWS default, and pgbench's batch
readonly VOLUME_PROBE_RATE=200     # GetTicket calls a second, with and without an import
readonly VOLUME_INLINE_BYTES=67108864

volume_sql_reset() {
  ((pg_stat_statements)) || return 0
  "${psql_bench[@]}" -c 'SELECT pg_stat_statements_reset()' >/dev/null
}

volume_sql_capture() {
  ((pg_stat_statements)) || return 0
  "${psql_bench[@]}" -A -F ' | ' -P footer=off -c "
    SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms, round(total_exec_time::numeric, 1) AS total_ms,
      regexp_replace(query, '\s+', ' ', 'g') AS query
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'supportdesk_bench')
      AND query NOT LIKE '%pg_stat_statements%'
    ORDER BY total_exec_time DESC LIMIT 30" >"$results/$1.sql.txt"
}

volume_now_ms() {
  date +%s%3N
}

mkdir -p "$results"
rm -f "$results"/volume*.json "$results"/volume*.sql.txt "$results"/pg-volume*.json \
  "$results"/pg-volume-ceiling-parts.jsonl \
  "$results"/pg-volume*.sql.txt "$results"/volume.md

# The import file is inline: up to IMPORT_MAX_INLINE_BYTES, which must fit MAX_REQUEST_BYTES.
# 100,000 rows are about 25 MB; the bench raises both (gRPC only: Envoy's 1 MiB body limit stays).
say "volume: the service with IMPORT_MAX_INLINE_BYTES=MAX_REQUEST_BYTES=$VOLUME_INLINE_BYTES"
start_service IMPORT_MAX_INLINE_BYTES=$VOLUME_INLINE_BYTES MAX_REQUEST_BYTES=$VOLUME_INLINE_BYTES

say "volume: the import file ($volume_rows rows, $VOLUME_REQUESTERS requesters)"
"$loadgen_bin" volume rows --rows "$volume_rows" --requesters "$VOLUME_REQUESTERS" --out "$work/import.csv"

say "volume: three accounts (import, CreateTicket, pgbench)"
# The import account has customers and tickets of its own: GetTicket reads them while imports run.
"$loadgen_bin" setup --addr "$service_addr" --users 20 --tickets 2000 --out "$work/volume-import.json"
"$loadgen_bin" setup --addr "$service_addr" --users 0 --tickets 0 --out "$work/volume-create.json"
"$loadgen_bin" setup --addr "$service_addr" --users 0 --tickets 0 --out "$work/volume-pgbench.json"
"${psql_bench[@]}" -c 'ANALYZE'

# --- 1. ImportTickets ---------------------------------------------------------------------------
say "volume: ImportTickets of $volume_rows rows"
volume_sql_reset
"$loadgen_bin" volume import --addr "$service_addr" --data "$work/volume-import.json" \
  --file "$work/import.csv" >"$results/volume-import.json"
volume_sql_capture volume-import

# --- 2. pgbench: the importer's statements, batch by batch ----------------------------------------
say "volume: pgbench loading the same rows with the importer's statements"
pg_account=$(jq -r .account_slug "$work/volume-pgbench.json")
pg_account_id=$("${psql_bench[@]}" -tAc "SELECT id FROM accounts WHERE slug = '$pg_account'")
pg_admin_id=$(jq -r .admin.user_id "$work/volume-pgbench.json")
pg_operation_id=$(uuidgen 2>/dev/null || cat /proc/sys/kernel/random/uuid)
pg_worker_id=$(uuidgen 2>/dev/null || cat /proc/sys/kernel/random/uuid)
"${psql_bench[@]}" <<SQL
CREATE OR REPLACE FUNCTION bench_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS \$\$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
    substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
\$\$;
DROP TABLE IF EXISTS bench_import_rows, bench_import_batches;
DROP SEQUENCE IF EXISTS bench_import_batch;
CREATE TABLE bench_import_rows (n bigserial PRIMARY KEY, subject text, description text,
  requester_email text, priority text);
\copy bench_import_rows (subject, description, requester_email, priority) FROM '$work/import.csv' WITH (FORMAT csv, HEADER true)
ALTER TABLE bench_import_rows ADD COLUMN batch bigint;
UPDATE bench_import_rows SET batch = (n - 1) / $VOLUME_BATCH_ROWS + 1;
CREATE INDEX ON bench_import_rows (batch);
CREATE TABLE bench_import_batches AS
  SELECT batch,
    array_agg(bench_uuid_v7() ORDER BY n)::text AS ids,
    array_agg(subject ORDER BY n)::text AS subjects,
    array_agg(description ORDER BY n)::text AS descriptions,
    array_agg(priority ORDER BY n)::text AS priorities,
    array_agg(NULL::uuid ORDER BY n)::text AS assignee_ids,
    array_agg(bench_uuid_v7() ORDER BY n)::text AS activity_ids,
    array_agg(DISTINCT requester_email ORDER BY requester_email)::text AS emails,
    NULL::text AS new_user_ids
  FROM bench_import_rows GROUP BY batch;
UPDATE bench_import_batches
  SET new_user_ids = (SELECT array_agg(bench_uuid_v7())::text FROM unnest(emails::text[]));
ALTER TABLE bench_import_batches ADD PRIMARY KEY (batch);
CREATE SEQUENCE bench_import_batch;
-- The operation the checkpoints move, holding the same file as the service's, leased to a
-- worker no instance runs (the service's workers leave it alone while the lease holds).
INSERT INTO operations (id, account_id, kind, state, actor_user_id, format, content, rows_total,
  lease_owner, lease_expires_at)
  SELECT '$pg_operation_id', '$pg_account_id', 'import_tickets', 'running', '$pg_admin_id', 'csv',
    string_agg(subject || ',' || description || ',' || requester_email || ',' || priority, E'\n' ORDER BY n),
    count(*), '$pg_worker_id', now() + interval '1 hour'
  FROM bench_import_rows;
ANALYZE bench_import_rows, bench_import_batches;
SQL
pg_batches=$("${psql_bench[@]}" -tAc 'SELECT count(*) FROM bench_import_batches')
volume_sql_reset
pg_started=$(volume_now_ms)
pg_output=$("$pgbench_bin" -n -h 127.0.0.1 -p "$SD_PG_PORT" -U postgres -c 1 -t "$pg_batches" \
  -M prepared -D account_id="$pg_account_id" -D admin_id="$pg_admin_id" \
  -D operation_id="$pg_operation_id" -D worker="$pg_worker_id" -D batch_rows="$VOLUME_BATCH_ROWS" \
  -D rows="$volume_rows" -f "$bench_dir/sql/import_batch.sql" supportdesk_bench 2>&1) ||
  sd_die "pgbench import_batch.sql failed: $pg_output"
pg_wall_ms=$(($(volume_now_ms) - pg_started))
volume_sql_capture pg-volume-import
pg_imported=$("${psql_bench[@]}" -tAc "SELECT count(*) FROM tickets WHERE account_id = '$pg_account_id'")
"${psql_bench[@]}" -c "UPDATE operations SET state = 'succeeded', done_at = now(), content = NULL,
  lease_owner = NULL, lease_expires_at = NULL WHERE id = '$pg_operation_id'" >/dev/null
pg_tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$pg_output" | head -n 1)
jq -c -n --argjson rows "$volume_rows" --argjson batches "$pg_batches" --argjson tps "${pg_tps:-0}" \
  --argjson wall_ms "$pg_wall_ms" --argjson imported "$pg_imported" \
  '{scenario: "pgbench import", rows: $rows, batches: $batches, batches_per_second: $tps,
    rows_per_second: ($tps * $rows / $batches), seconds_without_connecting: ($batches / $tps),
    seconds_wall: ($wall_ms / 1000), rows_imported: $imported}' >"$results/pg-volume-import.json"
[[ $pg_imported == "$volume_rows" ]] || sd_die "pgbench imported $pg_imported rows, not $volume_rows"

# --- 2b. The ceiling: COPY of the same rows straight into tickets ----------------------------------
# What PostgreSQL itself does with these rows on this machine, with every index, trigger and
# foreign key the tickets and their audit records carry: the rows (requesters already added, ids
# made beforehand, written to files first) loaded by one COPY into tickets and one into
# ticket_activities, in one transaction, into a fourth fresh account. No importer can go faster
# without changing what a ticket carries (docs/performance-history.md, "Tickets at volume").
say "volume: the ceiling, COPY of the same rows into tickets and their audit records"
"$loadgen_bin" setup --addr "$service_addr" --users 0 --tickets 0 --out "$work/volume-ceiling.json"
ceiling_account=$(jq -r .account_slug "$work/volume-ceiling.json")
ceiling_account_id=$("${psql_bench[@]}" -tAc "SELECT id FROM accounts WHERE slug = '$ceiling_account'")
ceiling_admin_id=$(jq -r .admin.user_id "$work/volume-ceiling.json")
"${psql_bench[@]}" <<SQL
INSERT INTO users (id, account_id, email, display_name, role)
  SELECT bench_uuid_v7(), '$ceiling_account_id', email, '', 'customer'
  FROM (SELECT DISTINCT requester_email AS email FROM bench_import_rows) e ORDER BY email;
CREATE TABLE bench_ceiling_rows AS
  SELECT r.n, bench_uuid_v7() AS id, r.subject, r.description, r.priority, u.id AS requester_id,
    bench_uuid_v7() AS activity_id,
    jsonb_build_object('priority', jsonb_build_object('old', NULL, 'new', r.priority),
      'requester_id', jsonb_build_object('old', NULL, 'new', u.id),
      'status', jsonb_build_object('old', NULL, 'new', 'new'),
      'subject', jsonb_build_object('old', NULL, 'new', r.subject)) AS changes
  FROM bench_import_rows r
  JOIN users u ON u.account_id = '$ceiling_account_id' AND u.email = r.requester_email;
\copy (SELECT id, '$ceiling_account_id', subject, description, priority, 'new', requester_id FROM bench_ceiling_rows ORDER BY n) TO '$work/ceiling-tickets.csv' WITH (FORMAT csv)
\copy (SELECT activity_id, '$ceiling_account_id', id, '$ceiling_admin_id', 'created', changes FROM bench_ceiling_rows ORDER BY n) TO '$work/ceiling-activities.csv' WITH (FORMAT csv)
DROP TABLE bench_ceiling_rows;
ANALYZE users;
SQL
volume_sql_reset
ceiling_started=$(volume_now_ms)
"${psql_bench[@]}" <<SQL
BEGIN;
\copy tickets (id, account_id, subject, description, priority, status, requester_id) FROM '$work/ceiling-tickets.csv' WITH (FORMAT csv)
\copy ticket_activities (id, account_id, ticket_id, actor_user_id, action, changes) FROM '$work/ceiling-activities.csv' WITH (FORMAT csv)
COMMIT;
SQL
ceiling_ms=$(($(volume_now_ms) - ceiling_started))
volume_sql_capture pg-volume-ceiling
ceiling_rows=$("${psql_bench[@]}" -tAc "SELECT count(*) FROM tickets WHERE account_id = '$ceiling_account_id'")
[[ $ceiling_rows == "$volume_rows" ]] || sd_die "the ceiling's COPY loaded $ceiling_rows rows, not $volume_rows"
jq -c -n --argjson rows "$ceiling_rows" --argjson ms "$ceiling_ms" \
  '{scenario: "copy into tickets", rows: $rows, seconds: ($ms / 1000),
    rows_per_second: ($rows * 1000 / $ms)}' >"$results/pg-volume-ceiling.json"

# --- 2c. What the ceiling is made of -----------------------------------------------------------
# The same COPY into a scratch database migrated like the service's, with the same account and
# requesters, first as it is and then with parts of what a ticket write carries removed: the
# search document (and its GIN index), the audit records, the list indexes. Each load is two
# COPYs of half the rows in parallel, one per core. It tells what the import target would cost
# (docs/performance-history.md, "What 50× would take"); the service's schema is not changed by it.
say "volume: what the ceiling is made of (a scratch database, parts of a ticket write removed)"
ceiling_db=supportdesk_bench_ceiling
psql_ceiling=("$psql_bin" -X -q -w -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SD_PG_PORT" -U postgres -d "$ceiling_db")
"${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $ceiling_db WITH (FORCE)"
DATABASE_URL="postgres://postgres@127.0.0.1:$SD_PG_PORT/$ceiling_db" LOG_FORMAT=pretty \
  "$service_bin" migrate --create-database >/dev/null
"${psql_bench[@]}" -c "COPY (SELECT * FROM accounts WHERE id = '$ceiling_account_id') TO STDOUT" |
  "${psql_ceiling[@]}" -c 'COPY accounts FROM STDIN'
"${psql_bench[@]}" -c "COPY (SELECT * FROM users WHERE account_id = '$ceiling_account_id') TO STDOUT" |
  "${psql_ceiling[@]}" -c 'COPY users FROM STDIN'
"${psql_ceiling[@]}" -c 'ANALYZE'
half=$(((volume_rows + 1) / 2))
for part in tickets activities; do
  head -n "$half" "$work/ceiling-$part.csv" >"$work/ceiling-$part-1.csv"
  tail -n "+$((half + 1))" "$work/ceiling-$part.csv" >"$work/ceiling-$part-2.csv"
done

ceiling_load_half() { # half (1 or 2), with audit records (0 or 1)
  local activities=""
  ((${2})) && activities="\\copy ticket_activities (id, account_id, ticket_id, actor_user_id, action, changes) FROM '$work/ceiling-activities-$1.csv' WITH (FORMAT csv)"
  "${psql_ceiling[@]}" <<SQL
BEGIN;
\\copy tickets (id, account_id, subject, description, priority, status, requester_id) FROM '$work/ceiling-tickets-$1.csv' WITH (FORMAT csv)
$activities
COMMIT;
SQL
}

ceiling_part() { # label, with audit records (0 or 1)
  "${psql_ceiling[@]}" -c 'DELETE FROM ticket_activities' -c 'DELETE FROM tickets' -c 'VACUUM ANALYZE'
  local started ms loaded
  started=$(volume_now_ms)
  ceiling_load_half 1 "$2" &
  local first=$!
  ceiling_load_half 2 "$2" || sd_die "the ceiling's part \"$1\" failed"
  wait "$first" || sd_die "the ceiling's part \"$1\" failed"
  ms=$(($(volume_now_ms) - started))
  loaded=$("${psql_ceiling[@]}" -tAc 'SELECT count(*) FROM tickets')
  [[ $loaded == "$volume_rows" ]] || sd_die "the ceiling's part \"$1\" loaded $loaded rows, not $volume_rows"
  jq -c -n --arg part "$1" --argjson rows "$loaded" --argjson ms "$ms" \
    '{part: $part, rows: $rows, seconds: ($ms / 1000), rows_per_second: ($rows * 1000 / $ms)}' \
    >>"$results/pg-volume-ceiling-parts.jsonl"
}

ceiling_part "every index, trigger and key, and the audit records (as the ceiling, in two halves at once)" 1
"${psql_ceiling[@]}" -c 'ALTER TABLE tickets DROP COLUMN search_document'
ceiling_part "without the search document and its GIN index" 1
ceiling_part "without the search document and the audit records" 0
"${psql_ceiling[@]}" -tAc "SELECT format('DROP INDEX %s;', indexrelid::regclass) FROM pg_index
  WHERE indrelid = 'tickets'::regclass AND NOT indisprimary AND NOT indisunique" |
  "${psql_ceiling[@]}"
ceiling_part "without the search document and the list indexes (primary and unique keys only)" 1
ceiling_part "without the search document, the list indexes and the audit records" 0
"${psql_admin[@]}" -c "DROP DATABASE $ceiling_db WITH (FORCE)"
rm -f "$work"/ceiling-*-[12].csv

# --- 3. CreateTicket, one call a row --------------------------------------------------------------
say "volume: CreateTicket of the same $volume_rows rows from $VOLUME_CLIENTS clients"
volume_sql_reset
"$loadgen_bin" volume create --addr "$service_addr" --data "$work/volume-create.json" \
  --file "$work/import.csv" --concurrency "$VOLUME_CLIENTS" >"$results/volume-create.json"
volume_sql_capture volume-create
"${psql_bench[@]}" -c 'ANALYZE'

# --- 4. ExportTickets and COPY ----------------------------------------------------------------------
say "volume: ExportTickets of the CreateTicket account over gRPC, RSS every 10 ms"
volume_sql_reset
"$loadgen_bin" volume export --addr "$service_addr" --data "$work/volume-create.json" \
  --rss-pid "$service_pid" --rss-every-ms 10 >"$results/volume-export-grpc.json"
volume_sql_capture volume-export-grpc
say "volume: ExportTickets over REST through Envoy, RSS every 10 ms"
"$loadgen_bin" volume export --rest --addr "127.0.0.1:$envoy_service_port" \
  --data "$work/volume-create.json" --rss-pid "$service_pid" --rss-every-ms 10 \
  >"$results/volume-export-rest.json"
say "volume: COPY (the export's select, every batch at once) TO STDOUT through psql"
create_account=$(jq -r .account_slug "$work/volume-create.json")
create_account_id=$("${psql_bench[@]}" -tAc "SELECT id FROM accounts WHERE slug = '$create_account'")
# The statement of the export's first batch (captured in volume-export-grpc.sql.txt), without
# its LIMIT: the whole export in one statement.
copy_sql="COPY (SELECT \"tickets\".\"id\", \"tickets\".\"account_id\", \"tickets\".\"subject\", \"tickets\".\"description\", \"tickets\".\"priority\", \"tickets\".\"status\", \"tickets\".\"requester_id\", \"tickets\".\"assignee_id\", \"tickets\".\"created_at\", \"tickets\".\"updated_at\", \"tickets\".\"version\", \"tickets\".\"deleted_at\", \"users\".\"email\" FROM (\"tickets\" INNER JOIN \"users\" ON (\"users\".\"id\" = \"tickets\".\"requester_id\")) WHERE ((\"tickets\".\"account_id\" = '$create_account_id') AND (\"tickets\".\"deleted_at\" IS NULL)) ORDER BY \"tickets\".\"created_at\" DESC, \"tickets\".\"id\" DESC) TO STDOUT"
copy_started=$(volume_now_ms)
read -r copy_rows copy_bytes < <("${psql_bench[@]}" -c "$copy_sql" | wc -lc)
copy_ms=$(($(volume_now_ms) - copy_started))
jq -c -n --argjson rows "$copy_rows" --argjson bytes "$copy_bytes" --argjson ms "$copy_ms" \
  '{scenario: "copy", rows: $rows, bytes: $bytes, seconds: ($ms / 1000),
    rows_per_second: ($rows * 1000 / $ms)}' >"$results/volume-copy.json"

# --- 5. GetTicket without and with an import running ---------------------------------------------
import_seconds=$(jq -r .seconds "$results/volume-import.json")
probe_seconds=$(jq -n --argjson s "$import_seconds" '[([($s * 0.6 - 1), 3] | max), 60] | min | floor')
say "volume: GetTicket at $VOLUME_PROBE_RATE/s for ${probe_seconds}s, no import running"
"$loadgen_bin" run --scenario get-ticket --addr "$service_addr" --data "$work/volume-import.json" \
  --concurrency 32 --connections 2 --rate "$VOLUME_PROBE_RATE" --warmup 1 \
  --duration "$probe_seconds" --cpu-of "service=$service_pid" --cpu-of "postgres=$postgres_pid" \
  >"$results/volume-get-ticket-idle.json"
say "volume: GetTicket at $VOLUME_PROBE_RATE/s for ${probe_seconds}s while the file is imported again"
"$loadgen_bin" volume import --addr "$service_addr" --data "$work/volume-import.json" \
  --file "$work/import.csv" --probe-rate "$VOLUME_PROBE_RATE" --probe-seconds "$probe_seconds" \
  --probe-data "$work/volume-import.json" >"$results/volume-import-probe.json"

# --- 6. Bytes on the wire -------------------------------------------------------------------------
say "volume: bytes on the wire of a page of 100 tickets"
"$loadgen_bin" wire-bytes --addr "$service_addr" --rest-addr "127.0.0.1:$envoy_service_port" \
  --data "$work/volume-create.json" --page-size 100 --calls 10 >"$results/volume-wire-bytes.json"

# --- the table ----------------------------------------------------------------------------------
{
  printf '# supportdesk bench: tickets at volume (%s rows, %s)\n\n' "$volume_rows" "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'Machine: %s cores, %s; load average at the end %s. PostgreSQL: a throwaway instance (fsync off), pool %s.\n\n' \
    "$(nproc)" "$(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$DB_POOL_SIZE"
  "$loadgen_bin" volume table --results "$results"
  jq -r --slurpfile the_import "$results/volume-import.json" '"\nThe ceiling: one COPY of the same " +
    (.rows | tostring) + " rows into tickets and one into ticket_activities (every index, trigger " +
    "and foreign key), in one transaction: " + (.seconds | tostring) + " s, " +
    (.rows_per_second | floor | tostring) + " rows/s; the import reached " +
    (($the_import[0].rows_per_second / .rows_per_second * 100 | round) / 100 | tostring) + " of it."' \
    "$results/pg-volume-ceiling.json"
  printf '\nWhat the ceiling is made of: the same rows in two COPYs at once into a scratch copy of the schema, parts removed (CreateTicket: %s rows/s; 50x is %s rows/s):\n\n' \
    "$(jq -r '.rows_per_second | floor' "$results/volume-create.json")" \
    "$(jq -r '.rows_per_second * 50 | floor' "$results/volume-create.json")"
  printf '| load | seconds | rows/s | x CreateTicket |\n|---|---:|---:|---:|\n'
  jq -r --slurpfile create "$results/volume-create.json" '"| " + .part + " | " +
    (.seconds | tostring) + " | " + (.rows_per_second | floor | tostring) + " | " +
    ((.rows_per_second / $create[0].rows_per_second * 10 | round) / 10 | tostring) + " |"' \
    "$results/pg-volume-ceiling-parts.jsonl"
} >"$results/volume.md"
cat "$results/volume.md"
sd_say "table written to bench/results/volume.md; raw JSON and captured SQL in bench/results/"
