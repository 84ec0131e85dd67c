# shellcheck shell=bash disable=SC2154 # work, results, psql_bench...: set by bench/run, which sources this
# bench/run --read-volume (sourced by bench/run once its PostgreSQL, Redis and the service run):
# SearchTickets, GetRevenue and GetTicketStats over an account holding a million tickets and a
# million charges, each one call at a time (their targets are a lone caller's p99), each right
# before pgbench running the same statements with one client over the same rows. The account
# is signed up through the API (an admin and READ_VOLUME_CUSTOMERS customers, logged in), then
# filled in SQL through the tables' own triggers (bench/sql/read_volume_*.sql), its rollups
# checked against a recount, VACUUM ANALYZE. Issue 68: every ticket carries 3 tags and values
# for 10 of the account's 20 custom fields, a fifth a group and a third an assignee
# (read_volume_organize.sql); RV_BESIDE_ACCOUNTS accounts beside it define the same fields over
# READ_VOLUME_BESIDE_TICKETS tickets each; the account's desk has 20 shared views
# (read_volume_views.sql), whose first pages and counts are two scenarios. Writes
# bench/results/read-volume.md.
#   READ_VOLUME_ROWS=N    tickets and charges (default 1,000,000; smaller for a smoke run)
#   READ_VOLUME_CALLS=N   recorded calls per scenario and pgbench transactions (default: 1,000
#                         for the customer's searches, GetRevenue and GetTicketStats; 200 for the
#                         agent's searches: the slow ones)

rv_rows=${READ_VOLUME_ROWS:-1000000}
rv_calls=${READ_VOLUME_CALLS:-1000}
rv_slow_calls=${READ_VOLUME_CALLS:-200}
readonly RV_CUSTOMERS=50           # logged-in customers: the callers of the customer searches
readonly RV_EXTRA_CUSTOMERS=10000  # customers made in SQL: requesters of most tickets
readonly RV_SEARCHES=500           # distinct search texts of the query mix
readonly RV_SEARCH_TARGET_MS=50    # issue 28: SearchTickets p99 over 1,000,000 tickets
readonly RV_DASHBOARD_TARGET_MS=20 # issue 29: GetRevenue and GetTicketStats p99
readonly RV_VIEW_PAGE_TARGET_MS=50 # issue 68: a view's first page, p99
readonly RV_COUNT_VIEWS_TARGET_MS=200 # issue 68: the side panel's 20 counts in one call, p99
readonly RV_BESIDE_ACCOUNTS=100    # issue 68: accounts beside the bench account
rv_beside_tickets=${READ_VOLUME_BESIDE_TICKETS:-1000}

rv_rows_file=$work/read-volume-rows
mkdir -p "$results"
rm -f "$results"/rv-*.json "$results"/rv-*.sql.txt "$results"/pg-rv-*.sql.txt "$results"/pg-rv-*.json
: >"$rv_rows_file"

say "read volume: signing up an account with $RV_CUSTOMERS customers"
"$loadgen_bin" setup --addr "$service_addr" --users "$RV_CUSTOMERS" --tickets 0 --out "$work/data.json"
rv_slug=$(jq -r .account_slug "$work/data.json")
rv_account_id=$("${psql_bench[@]}" -tAc "SELECT id FROM accounts WHERE slug = '$rv_slug'")

# --- seeding: SQL straight into the bench database, through the triggers ------------------------

say "read volume: seeding $rv_rows tickets and $rv_rows charges in SQL"
rv_seed_start=$(date +%s.%N)
"${psql_bench[@]}" -v account_id="$rv_account_id" -v extra_customers="$RV_EXTRA_CUSTOMERS" \
  -f "$bench_dir/sql/read_volume_seed.sql" >/dev/null
"${psql_bench[@]}" -v account_id="$rv_account_id" -v beside_accounts="$RV_BESIDE_ACCOUNTS" \
  -v beside_tickets="$rv_beside_tickets" -f "$bench_dir/sql/read_volume_organize.sql" >/dev/null
# Two sessions, one half each: the two cores.
rv_half=$((rv_rows / 2))
rv_pids=()
for part in 0 1; do
  first=$((part * rv_half + 1))
  last=$((part == 0 ? rv_half : rv_rows))
  "${psql_bench[@]}" -v account_id="$rv_account_id" -v tickets="$rv_rows" -v charges="$rv_rows" \
    -v first="$first" -v last="$last" -v first_charge="$first" -v last_charge="$last" \
    -f "$bench_dir/sql/read_volume_rows.sql" >/dev/null &
  rv_pids+=("$!")
done
for pid in "${rv_pids[@]}"; do wait "$pid" || sd_die "seeding the read-volume rows failed"; done
rv_rows_done=$(date +%s.%N)
rv_pids=()
for part in 0 1; do
  "${psql_bench[@]}" -v part="$part" -f "$bench_dir/sql/read_volume_indexes.sql" >/dev/null &
  rv_pids+=("$!")
done
for pid in "${rv_pids[@]}"; do wait "$pid" || sd_die "rebuilding the indexes failed"; done
rv_indexes_done=$(date +%s.%N)
"${psql_bench[@]}" -c 'VACUUM ANALYZE'
rv_seed_end=$(date +%s.%N)
"${psql_bench[@]}" -v account_id="$rv_account_id" -f "$bench_dir/sql/read_volume_check.sql"
rv_seed_times=$(awk -v a="$rv_seed_start" -v b="$rv_rows_done" -v c="$rv_indexes_done" -v d="$rv_seed_end" \
  'BEGIN { printf "%.0f s (rows %.0f s, indexes %.0f s, VACUUM ANALYZE %.0f s)", d - a, b - a, c - b, d - c }')
sd_say "seeded in $rv_seed_times; the rollups equal a recount of the base tables"

# --- the query mix -----------------------------------------------------------------------------

# RV_SEARCHES texts drawn like the tickets' searchable words (log-uniform rank over words 31 to
# 5,000, the stop words left out: Zipf with exponent 1, so the popular words are also the most
# searched): two thirds one word, one third two words (both must match, as
# websearch_to_tsquery reads them). Seeded: every run asks
# the same texts. The customers the customer searches call as, numbered for pgbench.
"${psql_bench[@]}" -v searches="$RV_SEARCHES" <<'SQL'
SELECT setseed(0.29) \g /dev/null
DROP TABLE IF EXISTS bench_searches, bench_search_customers;
CREATE TABLE bench_searches AS
SELECT n, CASE WHEN n % 3 = 0 THEN first.word || ' ' || second.word ELSE first.word END AS q
FROM (
  SELECT n, floor(exp(ln(31) + random() * (ln(5001) - ln(31))))::int AS a,
         floor(exp(ln(31) + random() * (ln(5001) - ln(31))))::int AS b
  FROM generate_series(1, :searches) AS n
  OFFSET 0
) draws
JOIN bench_words first ON first.word_rank = draws.a
JOIN bench_words second ON second.word_rank = draws.b;
ALTER TABLE bench_searches ADD PRIMARY KEY (n);
CREATE TABLE bench_search_customers AS
SELECT row_number() OVER (ORDER BY u.email) AS n, u.id AS user_id
FROM users u JOIN accounts a ON a.id = u.account_id
WHERE a.slug LIKE 'bench-%' AND u.role = 'customer' AND u.email LIKE 'customer-%';
ALTER TABLE bench_search_customers ADD PRIMARY KEY (n);
ANALYZE bench_searches, bench_search_customers;
SQL
"${psql_bench[@]}" -tA -c 'SELECT q FROM bench_searches ORDER BY n' >"$work/searches.txt"
"${psql_bench[@]}" -tA -v account_id="$rv_account_id" -f "$bench_dir/sql/read_volume_views.sql" \
  >"$work/views.txt"
jq --rawfile searches "$work/searches.txt" --rawfile views "$work/views.txt" \
  '.searches = ($searches | rtrimstr("\n") | split("\n")) | .views = ($views | rtrimstr("\n") | split("\n"))' \
  "$work/data.json" >"$work/read-volume.json"
rv_search_customers=$("${psql_bench[@]}" -tAc 'SELECT count(*) FROM bench_search_customers')
# How many tickets each text matches, for the docs: the spread of the mix (a count per text,
# about two minutes over a million tickets; READ_VOLUME_COUNT_MIX=0 skips it: the texts are the
# same every run).
if [[ ${READ_VOLUME_COUNT_MIX:-1} != 0 ]]; then
  "${psql_bench[@]}" -A -F ' | ' -P footer=off -c "
    SELECT q, (SELECT count(*) FROM tickets t
               WHERE t.account_id = '$rv_account_id' AND t.deleted_at IS NULL
                 AND t.search_document @@ websearch_to_tsquery('english', q)) AS tickets
    FROM bench_searches ORDER BY tickets DESC" >"$results/rv-searches.txt"
fi

# --- scenarios ---------------------------------------------------------------------------------

rv_sql_reset() {
  ((pg_stat_statements)) || return 0
  "${psql_bench[@]}" -c 'SELECT pg_stat_statements_reset()' >/dev/null
}

rv_sql_capture() {
  ((pg_stat_statements)) || return 0
  "${psql_bench[@]}" -A -F ' | ' -P footer=off -c "
    SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms, regexp_replace(query, '\s+', ' ', 'g') AS query
    FROM pg_stat_statements
    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'supportdesk_bench')
      AND query NOT LIKE '%pg_stat_statements%'
    ORDER BY calls DESC LIMIT 30" >"$results/$1.sql.txt"
}

# rv_service KEY LABEL TARGET_MS SCENARIO [CALLS]: CALLS (default rv_calls) calls one at a time,
# after 2 s of warm-up.
rv_service() {
  local key=$1 label=$2 target=$3 scenario=$4 calls=${5:-$rv_calls}
  say "read volume: $label"
  rv_sql_reset
  "$loadgen_bin" latency --scenario "$scenario" --addr "$service_addr" --data "$work/read-volume.json" \
    --calls "$calls" --warmup 2 >"$results/$key.json"
  rv_sql_capture "$key"
  printf '%s\t%s\t-\t%s\n' "$key" "$label" "errors=0,p99<${target}ms" >>"$rv_rows_file"
}

# rv_pgbench KEY LABEL TARGET_MS SCRIPT RATIO_TO PROTOCOL CALLS [-D VAR=value ...]: the same
# statements with one client, CALLS transactions after 2 s of warm-up, sent as the service sends them
# (PROTOCOL: prepared for the statements it keeps prepared, extended for raw SQL it sends
# unnamed); percentiles from pgbench's per-transaction log (--log: one line per transaction,
# its time in µs).
rv_pgbench() {
  local key=$1 label=$2 target=$3 script=$4 ratio_to=$5 protocol=$6 calls=$7
  shift 7
  say "read volume: pgbench, $label"
  "$pgbench_bin" -n -h 127.0.0.1 -p "$SD_PG_PORT" -U postgres -c 1 -j 1 -T 2 -M "$protocol" \
    -D account_id="$rv_account_id" -D searches="$RV_SEARCHES" \
    -D search_customers="$rv_search_customers" "$@" -f "$bench_dir/sql/$script" \
    supportdesk_bench >/dev/null 2>&1 || sd_die "pgbench $script (warm-up) failed"
  rv_sql_reset
  local output log_prefix=$work/$key
  rm -f "$log_prefix".*
  output=$("$pgbench_bin" -n -h 127.0.0.1 -p "$SD_PG_PORT" -U postgres -c 1 -j 1 -t "$calls" \
    -M "$protocol" -l --log-prefix "$log_prefix" \
    -D account_id="$rv_account_id" -D searches="$RV_SEARCHES" \
    -D search_customers="$rv_search_customers" "$@" -f "$bench_dir/sql/$script" \
    supportdesk_bench 2>&1) || sd_die "pgbench $script failed: $output"
  rv_sql_capture "$key"
  local tps failed
  tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<<"$output" | head -n 1)
  failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' <<<"$output")
  # Fields of a log line: client, transaction, time (µs), script, epoch s, µs.
  awk '{ print $3 }' "$log_prefix".* | sort -n | awk -v scenario="$label" -v tps="${tps:-0}" \
    -v failed="${failed:-0}" '
    { t[NR] = $1; sum += $1 }
    function q(p,   i) { i = int(p * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; return t[i] }
    END {
      printf "{\"scenario\": \"%s\", \"mode\": \"pgbench\", \"workers\": 1, \"rps\": %s, \"errors\": %d, ", scenario, tps, failed
      printf "\"calls\": %d, \"codes\": {}, \"latency_us\": {\"count\": %d, \"mean\": %.1f, \"p50\": %d, \"p90\": %d, \"p99\": %d, \"p999\": %d, \"max\": %d}}\n", NR, NR, sum / NR, q(0.5), q(0.9), q(0.99), q(0.999), t[NR]
    }' >"$results/$key.json"
  printf '%s\t%s\t%s\t%s\n' "$key" "$label" "$ratio_to" "errors=0,p99<${target}ms" >>"$rv_rows_file"
}

# rv_whole_months START END: the whole months of START..END as "FROM UNTIL" (UNTIL excluded),
# or the day after END twice when there is none, as ResponseTimes::read computes them
# (src/db/models/ticket_response_histogram.rs): GetTicketStats' pgbench scripts read the same rows.
rv_whole_months() {
  local start=$1 end=$2 after_end first_whole after_last_whole
  after_end=$(date -u -d "$end + 1 day" +%F)
  if [[ ${start:8:2} == 01 ]]; then
    first_whole=$start
  else
    first_whole=$(date -u -d "${start:0:7}-01 + 1 month" +%F)
  fi
  after_last_whole=${after_end:0:7}-01
  if [[ $first_whole < "$after_last_whole" ]]; then
    echo "$first_whole $after_last_whole"
  else
    echo "$after_end $after_end"
  fi
}

rv_today=$(date -u +%F)
rv_year_ago=$(date -u -d '364 days ago' +%F)
rv_month_ago=$(date -u -d '29 days ago' +%F)
read -r rv_month_months_from rv_month_months_until < <(rv_whole_months "$rv_month_ago" "$rv_today")
read -r rv_year_months_from rv_year_months_until < <(rv_whole_months "$rv_year_ago" "$rv_today")

rv_service rv-search-agent "SearchTickets as an agent (whole account, $rv_rows tickets)" \
  "$RV_SEARCH_TARGET_MS" search-tickets-agent "$rv_slow_calls"
rv_pgbench pg-rv-search-agent "pgbench: SearchTickets' SQL as an agent (1 client)" \
  "$RV_SEARCH_TARGET_MS" read_volume_search_agent.sql rv-search-agent extended "$rv_slow_calls"
rv_service rv-search-customer "SearchTickets as a customer (own tickets)" \
  "$RV_SEARCH_TARGET_MS" search-tickets-customer
rv_pgbench pg-rv-search-customer "pgbench: SearchTickets' SQL as a customer (1 client)" \
  "$RV_SEARCH_TARGET_MS" read_volume_search_customer.sql rv-search-customer extended "$rv_calls"
rv_service rv-revenue "GetRevenue, by day over 365 days ($rv_rows charges)" \
  "$RV_DASHBOARD_TARGET_MS" get-revenue-year
rv_pgbench pg-rv-revenue "pgbench: GetRevenue's SQL (1 client)" "$RV_DASHBOARD_TARGET_MS" \
  read_volume_revenue.sql rv-revenue prepared "$rv_calls" -D start_date="$rv_year_ago" -D end_date="$rv_today"
rv_service rv-ticket-stats-month "GetTicketStats, last 30 days ($rv_rows tickets)" \
  "$RV_DASHBOARD_TARGET_MS" get-ticket-stats-month
rv_pgbench pg-rv-ticket-stats-month "pgbench: GetTicketStats' SQL, 30 days (1 client)" \
  "$RV_DASHBOARD_TARGET_MS" read_volume_ticket_stats.sql rv-ticket-stats-month prepared "$rv_calls" \
  -D start_date="$rv_month_ago" -D end_date="$rv_today" -D timeout=2000 \
  -D months_from="$rv_month_months_from" -D months_until="$rv_month_months_until"
rv_service rv-ticket-stats-year "GetTicketStats, last 365 days ($rv_rows tickets)" \
  "$RV_DASHBOARD_TARGET_MS" get-ticket-stats-year
rv_pgbench pg-rv-ticket-stats-year "pgbench: GetTicketStats' SQL, 365 days (1 client)" \
  "$RV_DASHBOARD_TARGET_MS" read_volume_ticket_stats.sql rv-ticket-stats-year prepared "$rv_calls" \
  -D start_date="$rv_year_ago" -D end_date="$rv_today" -D timeout=2000 \
  -D months_from="$rv_year_months_from" -D months_until="$rv_year_months_until"

rv_service rv-view-page "ListTickets by a view, first page (one of 20 at random, $rv_rows tickets)" \
  "$RV_VIEW_PAGE_TARGET_MS" list-tickets-by-view
rv_service rv-count-views "CountViews: the 20 views of the side panel in one call" \
  "$RV_COUNT_VIEWS_TARGET_MS" count-views

{
  printf '# supportdesk bench, read volume (%s)\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'Machine: %s cores, %s; load average at the end: %s. One call at a time (gRPC, one connection), recorded calls per row: %s (the agent'"'"'s searches: %s), after 2 s of warm-up; pgbench with 1 client, as many transactions (-M extended for the searches, sent unnamed as the service sends them; -M prepared for the dashboard statements it keeps prepared). PostgreSQL: a throwaway instance (fsync off). Data: %s tickets and %s charges in one account (3 tags and 10 of 20 custom fields a ticket; 20 shared views), %s accounts beside it of %s tickets each, seeded in %s.\n\n' \
    "$(nproc)" "$(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
    "$(cut -d ' ' -f 1-3 /proc/loadavg)" "$rv_calls" "$rv_slow_calls" "$rv_rows" "$rv_rows" \
    "$RV_BESIDE_ACCOUNTS" "$rv_beside_tickets" "$rv_seed_times"
  "$loadgen_bin" table --rows "$rv_rows_file" --results "$results"
  printf '\npgbench rows: ratio = the service'"'"'s calls per second ÷ pgbench'"'"'s transactions per second, one at a time on both sides (the inverse ratio of their mean latencies). The query mix and how many tickets each text matches: bench/results/rv-searches.txt.\n'
} >"$results/read-volume.md"
cat "$results/read-volume.md"
sd_say "table written to bench/results/read-volume.md; raw JSON and captured SQL in bench/results/"
