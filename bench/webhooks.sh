# shellcheck shell=bash disable=SC2154 # the variables are bench/run's, which sources this file
# How late outbound webhooks arrive (issue 46, item 4): sourced by `bench/run --webhooks` once
# the bench's PostgreSQL and Redis run and its database is migrated; uses bench/run's variables
# and functions (say, start_service, stop_pid, ...). Writes bench/results/webhooks-*.json and
# bench/results/webhooks.md; bench/README.md ("Webhook delivery lag") says what each row measures.
#
# Two runs side by side, interleaved, WEBHOOK_ROUNDS times each, the service restarted before
# each run so that no run inherits another's hanging attempts:
#   healthy  100 endpoints (one account each), every one answering 200 at once
#   hanging  the same, 10 of them never answering (each attempt ends at the service's timeout)
# At 1,000 events a second, inserted in SQL (the service's triggers write the events), measured
# after a warm-up; the lag of a delivery is its arrival minus its event's createTime.

readonly WEBHOOK_ENDPOINTS=100 WEBHOOK_HANGING=10 WEBHOOK_RATE=1000
readonly WEBHOOK_TARGET_P99_MS=2000
case $mode in
  quick) webhook_rounds=1 webhook_warmup=3 webhook_seconds=10 ;;
  *) webhook_rounds=3 webhook_warmup=5 webhook_seconds=30 ;;
esac

# webhook_run LABEL HANGING ROUND: one run against a freshly started service.
webhook_run() {
  local label=$1 hanging=$2 round=$3
  start_service OUTBOUND_WEBHOOK_ALLOW_HTTP=true OUTBOUND_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8
  say "round $round of $webhook_rounds: $label ($WEBHOOK_ENDPOINTS endpoints, $hanging hanging, $WEBHOOK_RATE events/s)"
  "$loadgen_bin" webhook-lag --addr "$service_addr" --database-url "$database_url" \
    --endpoints "$WEBHOOK_ENDPOINTS" --hanging "$hanging" --rate "$WEBHOOK_RATE" \
    --warmup "$webhook_warmup" --duration "$webhook_seconds" --label "$label" \
    --cpu-of "service=$service_pid" --cpu-of "postgres=$postgres_pid" \
    >"$results/webhooks-$label-$round.json"
}

postgres_pid=$(head -n 1 "$SD_PG_INSTANCE/data/postmaster.pid")
for ((round = 1; round <= webhook_rounds; round++)); do
  webhook_run healthy 0 "$round"
  webhook_run hanging "$WEBHOOK_HANGING" "$round"
done
stop_pid "$service_pid"
service_pid=""

# The round with the median p99 of each run, with every round's p99 beside it.
for label in healthy hanging; do
  jq -s -c 'sort_by(.lag_ms_p99) | .[(length - 1) / 2 | floor] + {rounds_p99: map(.lag_ms_p99)}' \
    "$results"/webhooks-"$label"-*.json >"$results/webhooks-$label.json"
  rm -f "$results"/webhooks-"$label"-[0-9]*.json
done

# --- the outbox's cost on the write path ------------------------------------------------------

# CreateTicket's whole transaction as the service sends it (bench/sql/create_ticket.sql), by
# pgbench, with the service stopped: the triggers that write ticket.created (and fan it out)
# disabled, enabled for an account with no endpoint, and enabled for one with three endpoints
# (their deliveries wait: nothing delivers). Interleaved, WEBHOOK_ROUNDS rounds, medians.
outbox_account=$("${psql_bench[@]}" -tAc "SELECT account_id FROM users WHERE email LIKE 'admin@lag-%' ORDER BY created_at LIMIT 1")
outbox_admin=$("${psql_bench[@]}" -tAc "SELECT id FROM users WHERE account_id = '$outbox_account' AND role = 'admin' LIMIT 1")
outbox_subscribed=$("${psql_bench[@]}" -tAc "SELECT account_id FROM users WHERE email LIKE 'admin@lag-%' ORDER BY created_at OFFSET 1 LIMIT 1")
outbox_subscribed_admin=$("${psql_bench[@]}" -tAc "SELECT id FROM users WHERE account_id = '$outbox_subscribed' AND role = 'admin' LIMIT 1")
"${psql_bench[@]}" <<SQL
CREATE OR REPLACE FUNCTION bench_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS \$\$
  SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING
    substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
    FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
\$\$;
INSERT INTO webhook_endpoints (id, account_id, url, event_types, secret_ciphertext)
SELECT gen_random_uuid(), '$outbox_subscribed', 'https://hooks.example.com/' || n,
       '{ticket.created}', '\\x00'
FROM generate_series(1, 3) n;
SQL
case $mode in
  quick) outbox_seconds=5 ;;
  *) outbox_seconds=10 ;;
esac

# outbox_pgbench LABEL TRIGGERS ACCOUNT ADMIN ROUND: one pgbench run of create_ticket.sql.
outbox_pgbench() {
  local label=$1 triggers=$2 account=$3 admin=$4 round=$5
  "${psql_bench[@]}" -c "ALTER TABLE tickets $triggers TRIGGER tickets_created_events" -c CHECKPOINT
  local postgres_before output tps transactions postgres_ticks
  postgres_before=$("$loadgen_bin" cpu-ticks --of "$postgres_pid")
  output=$("$pgbench_bin" -n -h 127.0.0.1 -p "$SD_PG_PORT" -U postgres -c "$DB_POOL_SIZE" -j 2 \
    -T "$outbox_seconds" -M prepared -D account_id="$account" -D admin_id="$admin" \
    -D run="$RANDOM$RANDOM" -f "$bench_dir/sql/create_ticket.sql" supportdesk_bench 2>&1) ||
    sd_die "pgbench create_ticket.sql failed: $output"
  postgres_ticks=$(($("$loadgen_bin" cpu-ticks --of "$postgres_pid") - postgres_before))
  tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$output" | head -n 1)
  transactions=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' <<<"$output")
  jq -c -n --arg name "$label" --argjson tps "${tps:-0}" --argjson transactions "${transactions:-0}" \
    --argjson ticks "$postgres_ticks" \
    '{label: $name, tps: $tps, postgres_us_per_create: (if $transactions > 0 then $ticks * 10000 / $transactions else null end)}' \
    >"$results/outbox-$label-$round.json"
  sd_say "pgbench create_ticket.sql, $label: $tps tps"
}

say "the outbox's cost on CreateTicket's transaction (pgbench, $webhook_rounds round(s) of ${outbox_seconds}s)"
for ((round = 1; round <= webhook_rounds; round++)); do
  outbox_pgbench without-outbox DISABLE "$outbox_account" "$outbox_admin" "$round"
  outbox_pgbench outbox-no-endpoint ENABLE "$outbox_account" "$outbox_admin" "$round"
  outbox_pgbench outbox-three-endpoints ENABLE "$outbox_subscribed" "$outbox_subscribed_admin" "$round"
done
"${psql_bench[@]}" -c 'ALTER TABLE tickets ENABLE TRIGGER tickets_created_events'
for label in without-outbox outbox-no-endpoint outbox-three-endpoints; do
  jq -s -c 'sort_by(.tps) | .[(length - 1) / 2 | floor] + {rounds_tps: map(.tps)}' \
    "$results"/outbox-"$label"-*.json >"$results/outbox-$label.json"
  rm -f "$results"/outbox-"$label"-[0-9]*.json
done

{
  printf '# supportdesk bench: webhook delivery lag (%s run, %s)\n\n' "$mode" "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'Machine: %s cores, %s. %s endpoints, one account each, subscribed to ticket.created; %s events/s inserted in SQL for %s s after %s s of warm-up; the service (release, default OUTBOUND_WEBHOOK_* settings: 32 endpoints at once, 10 s attempt timeout) restarted before each run; %s interleaved round(s) a row, the round with the median p99 shown. Lag: arrival at the receiver minus the event'"'"'s createTime, of each healthy event'"'"'s first arrival. Target: p99 with hanging endpoints at most %s ms.\n\n' \
    "$(nproc)" "$(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
    "$WEBHOOK_ENDPOINTS" "$WEBHOOK_RATE" "$webhook_seconds" "$webhook_warmup" "$webhook_rounds" "$WEBHOOK_TARGET_P99_MS"
  printf '| run | events/s | healthy events delivered | lag p50 | lag p90 | lag p99 | lag max | p99 of each round | attempts at hanging endpoints | service CPU per delivery | PostgreSQL CPU per delivery | target |\n'
  printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
  for label in healthy hanging; do
    jq -r --argjson target "$WEBHOOK_TARGET_P99_MS" '
      def ms: if . == null then "n/a" else "\(. | round) ms" end;
      def us: if . == null then "n/a" else "\(. | round) µs" end;
      "| \(.label) (\(.endpoints) endpoints, \(.hanging) hanging) | \(.events_per_s | round) | \(.healthy_delivered) of \(.healthy_events) | \(.lag_ms_p50 | ms) | \(.lag_ms_p90 | ms) | \(.lag_ms_p99 | ms) | \(.lag_ms_max | ms) | \(.rounds_p99 | map(round | tostring) | join(", ")) ms | \(.hanging_attempts) | \(.cpu_us_per_delivery.service | us) | \(.cpu_us_per_delivery.postgres | us) | \(if .hanging == 0 then "—" elif (.lag_ms_p99 <= $target and .healthy_delivered == .healthy_events) then "p99 ≤ \($target) ms: met" else "p99 ≤ \($target) ms: NOT met" end) |"' \
      "$results/webhooks-$label.json"
  done
  printf '\nThe outbox on the write path: CreateTicket'"'"'s whole transaction (bench/sql/create_ticket.sql) by pgbench, %s clients, %s s a run, %s interleaved round(s), the median round:\n\n' \
    "$DB_POOL_SIZE" "$outbox_seconds" "$webhook_rounds"
  printf '| CreateTicket transaction | tps | tps of each round | PostgreSQL CPU per create | ratio to without |\n|---|---|---|---|---|\n'
  without_tps=$(jq -r .tps "$results/outbox-without-outbox.json")
  for label in without-outbox outbox-no-endpoint outbox-three-endpoints; do
    jq -r --argjson base "$without_tps" '
      "| \(.label) | \(.tps | round) | \(.rounds_tps | map(round | tostring) | join(", ")) | \(if .postgres_us_per_create == null then "n/a" else "\(.postgres_us_per_create | round) µs" end) | \(if $base > 0 then (.tps / $base * 100 | round / 100) else "n/a" end) |"' \
      "$results/outbox-$label.json"
  done
} >"$results/webhooks.md"
cat "$results/webhooks.md"
sd_say "table written to bench/results/webhooks.md"
