# shellcheck shell=bash disable=SC2154 # the variables are bench/run's, which sources this file
# One instance against three behind Envoy (issue 44, item 5): sourced by `bench/run --fleet`
# once the bench's PostgreSQL and Redis run and its database is migrated; uses bench/run's
# variables and functions (say, stop_pid, pick_port, envoy_config, start_envoy, row, ...).
# Writes bench/results/fleet-*.json and bench/results/fleet.md; bench/README.md ("One instance
# or three") says what each row measures.
#
#   1. the payment simulator, three release instances of the service (SHUTDOWN_DELAY_MS as in
#      production) and two Envoys rendered by `supportdesk envoy-config`: one in front of instance 1,
#      one in front of all three
#   2. the mixed load (loadgen's `mixed` scenario) through each Envoy in turn, ROUNDS times,
#      interleaved; the median round of each is the row; the spread over the instances from
#      Envoy's own count of the requests each host was sent
#   3. the same load through the three-instance Envoy while every instance is restarted, one at a
#      time, as a deploy does: the failed requests of that window

readonly FLEET_SIZE=3
# The service's own default: the instances report NOT_SERVING for this long before they stop
# listening, and Envoy's health-check interval is a third of it (supportdesk envoy-config).
readonly FLEET_SHUTDOWN_DELAY_MS=3000
# The rolling restart's window: three restarts take about 6 s each (the drain delay, the drain,
# the start, one health check), started once the warm-up is over and 3 s of steady load counted.
readonly ROLL_SECONDS=40 ROLL_LEAD_SECONDS=3
readonly SIMULATOR_API_KEY=sk_test_bench
case $mode in
  quick) fleet_rounds=1 fleet_users=30 fleet_tickets=1000 ;;
  *) fleet_rounds=3 fleet_users=100 fleet_tickets=5000 ;;
esac

fleet_now_ms() {
  date +%s%3N
}

# --- processes ---------------------------------------------------------------------------------

webhook_secret=whsec_$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
pick_port && envoy_one_port=$picked_port
pick_port && envoy_one_admin=$picked_port
pick_port && envoy_three_port=$picked_port
pick_port && envoy_three_admin=$picked_port
fleet_addrs=()
fleet_metrics=()
for ((k = 1; k <= FLEET_SIZE; k++)); do
  pick_port && fleet_addrs+=("127.0.0.1:$picked_port")
  pick_port && fleet_metrics+=("127.0.0.1:$picked_port")
done

# The payment provider's simulator: it prints `listening on ADDR` first. It sends a signed webhook
# for every change of its ledger to the three-instance Envoy, as a provider would.
say "starting the payment simulator"
PAYMENT_SIM_WEBHOOK_SECRETS=$webhook_secret "$simulator_bin" --listen 127.0.0.1:0 \
  --api-key "$SIMULATOR_API_KEY" \
  --webhook-url "http://127.0.0.1:$envoy_three_port/v1/webhooks/payments" \
  >"$work/simulator.log" 2>&1 &
simulator_pid=$!
simulator_addr=""
# shellcheck disable=SC2329 # called through sd_wait_until
simulator_listening() {
  kill -0 "$simulator_pid" 2>/dev/null || sd_die "the payment simulator exited (log: $work/simulator.log)"
  local line
  line=$(grep -m 1 '^listening on ' "$work/simulator.log") || return 1
  simulator_addr=${line#listening on }
}
sd_wait_until 30 simulator_listening || sd_die "the payment simulator did not print its address"

# fleet_start K: starts instance K (1 to FLEET_SIZE) with the bench's settings, the payment
# provider and the production drain delay; its PID goes to fleet_pids[K-1].
fleet_start() {
  local k=$1
  env "${bench_settings[@]}" GRPC_LISTEN_ADDR="${fleet_addrs[k - 1]}" \
    METRICS_LISTEN_ADDR="${fleet_metrics[k - 1]}" \
    PAYMENT_PROVIDER_URL="http://$simulator_addr" PAYMENT_PROVIDER_SECRET_KEY=$SIMULATOR_API_KEY \
    PAYMENT_WEBHOOK_SECRET="$webhook_secret" SHUTDOWN_DELAY_MS=$FLEET_SHUTDOWN_DELAY_MS \
    ${service_env[@]+"${service_env[@]}"} "$service_bin" serve >>"$work/service-$k.log" 2>&1 &
  fleet_pids[k - 1]=$!
}

# fleet_serving K: instance K answers SERVING (and has not exited).
fleet_serving() {
  kill -0 "${fleet_pids[$1 - 1]}" 2>/dev/null ||
    sd_die "instance $1 exited (log: $(tail -n 5 "$work/service-$1.log"))"
  "$service_bin" healthcheck --addr "${fleet_addrs[$1 - 1]}" 2>/dev/null
}

# envoy_healthy ADMIN_PORT ADDR: that Envoy's last health check of ADDR passed.
envoy_healthy() {
  local flags
  flags=$(curl -sf "http://127.0.0.1:$1/clusters" | grep -F "supportdesk::$2::health_flags::") || return 1
  [[ $flags == *"::health_flags::healthy" ]]
}

say "starting $FLEET_SIZE release instances of the service (SHUTDOWN_DELAY_MS=$FLEET_SHUTDOWN_DELAY_MS)"
for ((k = 1; k <= FLEET_SIZE; k++)); do
  fleet_start "$k"
done
for ((k = 1; k <= FLEET_SIZE; k++)); do
  sd_wait_until 60 fleet_serving "$k" || sd_die "instance $k did not become SERVING"
done

# Both Envoys from `supportdesk envoy-config`, as a deployment renders its own: the upstreams and the
# drain delay set, then only the ports, the descriptor and the access log (/dev/null) substituted.
"$service_bin" descriptor --out "$work/supportdesk.pb"
fleet_envoy() {
  local name=$1 listen=$2 admin=$3 upstreams=$4
  UPSTREAM_ADDRESSES=$upstreams SHUTDOWN_DELAY_MS=$FLEET_SHUTDOWN_DELAY_MS \
    "$service_bin" envoy-config --out "$work/envoy-$name.rendered.yaml"
  envoy_config "$listen" "$admin" - "$work/supportdesk.pb" "" "$work/envoy-$name.yaml" \
    "$work/envoy-$name.rendered.yaml"
  start_envoy "$work/envoy-$name.yaml" "$listen" "$work/envoy-$name.log"
}
say "starting two Envoys: in front of instance 1, and in front of all $FLEET_SIZE"
fleet_envoy one "$envoy_one_port" "$envoy_one_admin" "${fleet_addrs[0]}"
envoy_one_pid=$LAST_PID
fleet_envoy three "$envoy_three_port" "$envoy_three_admin" "$(
  IFS=,
  echo "${fleet_addrs[*]}"
)"
envoy_three_pid=$LAST_PID
sd_wait_until 30 envoy_healthy "$envoy_one_admin" "${fleet_addrs[0]}" ||
  sd_die "Envoy does not see instance 1 healthy (log: $work/envoy-one.log)"
for addr in "${fleet_addrs[@]}"; do
  sd_wait_until 30 envoy_healthy "$envoy_three_admin" "$addr" ||
    sd_die "Envoy does not see $addr healthy (log: $work/envoy-three.log)"
done

say "setting up: $fleet_users customers, $fleet_tickets tickets"
"$loadgen_bin" setup --addr "${fleet_addrs[0]}" --users "$fleet_users" --tickets "$fleet_tickets" \
  --out "$work/data.json"
"${psql_bench[@]}" -c 'ANALYZE'

postgres_pid=$(head -n 1 "$SD_PG_INSTANCE/data/postmaster.pid")
redis_pid=$(redis-cli -p "$redis_port" info server | tr -d '\r' | sed -n 's/^process_id://p')

# --- measuring ---------------------------------------------------------------------------------

# served_by ADMIN_PORT: `ADDR COUNT` per instance, the requests that Envoy sent it so far.
served_by() {
  curl -sf "http://127.0.0.1:$1/clusters" |
    sed -nE 's/^supportdesk::([0-9.]+:[0-9]+)::rq_total::([0-9]+)$/\1 \2/p' | sort
}

# envoy_stat ADMIN_PORT NAME: one counter of Envoy's (0 before it is made).
envoy_stat() {
  curl -sf "http://127.0.0.1:$1/stats?filter=^$2\$" | sed -nE "s/^$2: ([0-9]+)$/\1/p" | grep . || echo 0
}

# bulkhead_refusals: CreateCharge calls the instances refused at once because their payment
# provider's bulkhead was full (UNAVAILABLE with RetryInfo), summed over the instances.
bulkhead_refusals() {
  local metrics total=0 count
  for metrics in "${fleet_metrics[@]}"; do
    count=$(curl -sf "http://$metrics/metrics" |
      sed -nE 's/^supportdesk_provider_bulkhead_refusals_total(\{[^}]*\})? ([0-9]+)$/\2/p' |
      awk '{ total += $1 } END { print total + 0 }') || count=0
    total=$((total + ${count:-0}))
  done
  echo "$total"
}

# mixed_load KEY ENVOY_PORT ADMIN_PORT DURATION [loadgen options]: the mixed load through one
# Envoy; the report gets each instance's share of what Envoy sent (warm-up included), how many
# requests Envoy retried and how many the payment bulkheads refused (warm-up included too; not
# with count_refusals=0, for a window in which instances restart and their counters with them).
mixed_load() {
  local key=$1 port=$2 admin=$3 seconds=$4
  shift 4
  local before retries_before refusals_before
  before=$(served_by "$admin")
  retries_before=$(envoy_stat "$admin" cluster.supportdesk.upstream_rq_retry)
  refusals_before=$(bulkhead_refusals)
  local count_refusals=${count_refusals:-1}
  "$loadgen_bin" run --scenario mixed --addr "127.0.0.1:$port" --data "$work/data.json" \
    --concurrency "$GRPC_CONCURRENCY" --connections "$GRPC_CONNECTIONS" --warmup "$warmup" \
    --duration "$seconds" --cpu-of "redis=$redis_pid" --cpu-of "postgres=$postgres_pid" \
    --cpu-of "simulator=$simulator_pid" "$@" >"$work/$key.json"
  local shares retries refusals
  shares=$(join -a 2 -e 0 -o 0,1.2,2.2 <(printf '%s\n' "$before") <(served_by "$admin") |
    jq -R -s 'split("\n") | map(select(length > 0) | split(" ")
      | {key: .[0], value: ((.[2] | tonumber) - (.[1] | tonumber))})
      | (map(.value) | add) as $total | map(.value /= $total) | from_entries')
  retries=$(($(envoy_stat "$admin" cluster.supportdesk.upstream_rq_retry) - retries_before))
  refusals=null
  ((count_refusals)) && refusals=$(($(bulkhead_refusals) - refusals_before))
  jq -c --argjson shares "$shares" --argjson retries "$retries" --argjson refusals "$refusals" \
    '. + {instance_shares: $shares, envoy_retries: $retries}
       + if $refusals == null then {} else {bulkhead_refusals: $refusals} end' \
    "$work/$key.json" >"$results/$key.json"
}

# The CPU of every instance is one figure (`service`), as is each Envoy's.
instance_cpu=()
for pid in "${fleet_pids[@]}"; do instance_cpu+=(--cpu-of "service=$pid"); done

mkdir -p "$results"
rm -f "$results"/fleet-*.json "$results"/fleet.md
: >"$rows"
for ((round = 1; round <= fleet_rounds; round++)); do
  say "round $round of $fleet_rounds: the mixed load through one instance"
  mixed_load "fleet-one-$round" "$envoy_one_port" "$envoy_one_admin" "$duration" \
    --cpu-of "envoy=$envoy_one_pid" --cpu-of "service=${fleet_pids[0]}"
  say "round $round of $fleet_rounds: the mixed load through $FLEET_SIZE instances"
  mixed_load "fleet-three-$round" "$envoy_three_port" "$envoy_three_admin" "$duration" \
    --cpu-of "envoy=$envoy_three_pid" "${instance_cpu[@]}"
done

# median_round NAME: the report of the round with the median req/s becomes fleet-NAME.json,
# with every round's req/s beside it.
median_round() {
  local name=$1
  jq -s -c 'sort_by(.rps) | .[(length - 1) / 2 | floor] + {rounds_rps: map(.rps)}' \
    "$results"/fleet-"$name"-*.json >"$results/fleet-$name.json"
  rm -f "$results"/fleet-"$name"-*.json
}
median_round one
median_round three
row fleet-one "Mixed load, 1 instance behind Envoy" - "errors=0"
row fleet-three "Mixed load, $FLEET_SIZE instances behind Envoy" fleet-one "errors=0"

# --- the rolling restart -------------------------------------------------------------------------

# Every instance in turn: SIGTERM (NOT_SERVING at once, serving on for the drain delay while
# Envoy's health checks notice, then draining), wait for it to exit, start its replacement on the
# same address, and wait until it is SERVING and Envoy's health check has passed it, as
# deploy/local/run's SIGUSR1 and a Kubernetes rolling update do.
say "rolling restart of $FLEET_SIZE instances under the mixed load (${ROLL_SECONDS}s window)"
roll_loaded_at=$(($(fleet_now_ms) + warmup * 1000))
count_refusals=0 mixed_load fleet-roll "$envoy_three_port" "$envoy_three_admin" "$ROLL_SECONDS" \
  --cpu-of "envoy=$envoy_three_pid" &
roll_load_pid=$!
sleep $((warmup + ROLL_LEAD_SECONDS))
roll_started=$(fleet_now_ms)
for ((k = 1; k <= FLEET_SIZE; k++)); do
  say "rolling restart: instance $k (${fleet_addrs[k - 1]})"
  kill -TERM "${fleet_pids[k - 1]}"
  sd_wait_until 60 sd_pid_gone "${fleet_pids[k - 1]}" || sd_die "instance $k did not exit within 60 s of SIGTERM"
  wait "${fleet_pids[k - 1]}" || sd_die "instance $k exited with status $? after SIGTERM"
  fleet_start "$k"
  sd_wait_until 60 fleet_serving "$k" || sd_die "instance $k's replacement did not become SERVING"
  sd_wait_until 30 envoy_healthy "$envoy_three_admin" "${fleet_addrs[k - 1]}" ||
    sd_die "Envoy does not see instance $k's replacement healthy"
done
roll_ended=$(fleet_now_ms)
wait "$roll_load_pid" || sd_die "the load of the rolling restart failed"
jq -c --argjson instances "$FLEET_SIZE" --argjson ms "$((roll_ended - roll_started))" \
  --argjson inside "$((roll_started >= roll_loaded_at && roll_ended <= roll_loaded_at + ROLL_SECONDS * 1000))" \
  '. + {rolling_restart: {instances: $instances, seconds: ($ms / 1000), inside_window: ($inside == 1)}}' \
  "$results/fleet-roll.json" >"$work/fleet-roll.json"
mv "$work/fleet-roll.json" "$results/fleet-roll.json"
row fleet-roll "Mixed load, $FLEET_SIZE instances, rolling restart of every one" fleet-three "errors=0"

{
  printf '# supportdesk bench: one instance or three (%s run, %s)\n\n' "$mode" "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'Machine: %s cores, %s. The mixed load (of every 8 calls: 3 GetTicket, 1 ListTickets, 2 CreateTicket, 1 AddComment, 1 CreateCharge, the writes with idempotency keys) through Envoy: %s in flight over %s HTTP/2 connections; %s s measured after %s s warm-up, %s interleaved round(s) a row. Release builds; PostgreSQL a throwaway instance (fsync off), pool %s per instance. Every process shares the same cores: on this machine the 3-instance row shows what balancing costs, not what scaling gains.\n\n' \
    "$(nproc)" "$(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
    "$GRPC_CONCURRENCY" "$GRPC_CONNECTIONS" "$duration" "$warmup" "$fleet_rounds" "$DB_POOL_SIZE"
  "$loadgen_bin" table --rows "$rows" --results "$results"
} >"$results/fleet.md"
cat "$results/fleet.md"
sd_say "table written to bench/results/fleet.md"
