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
} >"$results/webhooks.md"
cat "$results/webhooks.md"
sd_say "table written to bench/results/webhooks.md"
