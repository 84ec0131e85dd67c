# shellcheck shell=bash disable=SC2154 # the variables are bench/run's, which sources this file
# CreateTicket and GetTicket side by side with an older commit (issue 68, item 6: "within 10 % of
# the commit before this work, built by the bench"): sourced by `bench/run --baseline REV`, which
# calls baseline_build right after its own build and baseline_compare once the bench's PostgreSQL
# and Redis run; uses bench/run's variables and functions (say, stop_pid, pick_port, row,
# bench_settings, start_service, ...). Writes bench/results/baseline-*.json and
# bench/results/baseline.md; bench/README.md ("Against an older commit") says what each row is.
#
#   1. REV's sources, unpacked once into .tools/bench-baseline/<sha>/ (git archive: no work tree
#      to register, nothing committed), its release built once with a target directory of its own
#      and the binary kept as .tools/bench-baseline/bin/<sha>/supportdesk, so a second run builds
#      nothing
#   2. both services at once, each on its own database migrated by its own binary and under its
#      own Redis key prefix, each seeded by the current loadgen
#   3. GetTicket, then CreateTicket, ROUNDS times each, the two services one after the other and
#      the order swapped every round, so that the machine's drift falls on both alike; the
#      median round of each side is its row
#   4. instructions per call of both binaries (bench/instructions), which the machine's load does
#      not move

readonly BASELINE_DIR=$SD_TOOLS/bench-baseline
readonly BASELINE_DATABASE=supportdesk_bench_baseline
# Issue 68's bound: each figure of the current tree within 10 % of the baseline's.
readonly BASELINE_TOLERANCE=1.1

# baseline_build REV: baseline_sha, baseline_short and baseline_bin, the release service of REV.
baseline_build() {
  local rev=$1
  baseline_sha=$(git -C "$root" rev-parse --verify --quiet "$rev^{commit}") ||
    sd_die "--baseline: '$rev' names no commit of this repository"
  baseline_short=$(git -C "$root" rev-parse --short "$baseline_sha")
  baseline_bin=$BASELINE_DIR/bin/$baseline_sha/supportdesk
  if [[ -x $baseline_bin ]]; then
    say "baseline $baseline_short: already built ($baseline_bin)"
    return 0
  fi
  local tree=$BASELINE_DIR/$baseline_sha
  if [[ ! -f $tree/Cargo.toml ]]; then
    say "baseline $baseline_short: unpacking its sources into $tree"
    mkdir -p "$BASELINE_DIR"
    # Unpacked beside and renamed, so that an interrupted unpack is never taken for a tree.
    local unpacking
    unpacking=$(mktemp -d "$BASELINE_DIR/.unpacking.XXXXXX")
    git -C "$root" archive --format=tar "$baseline_sha" | tar -x -C "$unpacking"
    rm -rf "$tree"
    mv "$unpacking" "$tree"
  fi
  # The same packages as the current tree's build: features unify over the packages built, so
  # building the service alone could give it other dependency features than the current one's.
  # SUPPORTDESK_GIT_REVISION: the tree is no checkout, and its build.rs would say `unknown`.
  say "baseline $baseline_short: building release (target directory $BASELINE_DIR/target)"
  (cd "$tree" && CARGO_TARGET_DIR=$BASELINE_DIR/target SUPPORTDESK_GIT_REVISION=$baseline_sha \
    cargo build --release --locked -p supportdesk -p supportdesk-bench) ||
    sd_die "building $baseline_short failed"
  [[ -x $BASELINE_DIR/target/release/supportdesk ]] || sd_die "cargo build did not produce the baseline's service"
  # A copy per commit: the shared target directory holds only the last commit built.
  mkdir -p "${baseline_bin%/*}"
  cp "$BASELINE_DIR/target/release/supportdesk" "$baseline_bin.partial"
  mv "$baseline_bin.partial" "$baseline_bin"
}

# Starts (or restarts) the baseline's service: the bench's settings and --service-env as the
# current one gets, only its database and key prefix its own (under the bench's prefix, so that
# bench/run's cleanup takes its keys too).
start_baseline() {
  stop_pid "$baseline_pid"
  baseline_pid=""
  env "${bench_settings[@]}" GRPC_LISTEN_ADDR="$baseline_addr" METRICS_LISTEN_ADDR="$baseline_metrics_addr" \
    SHUTDOWN_DELAY_MS=0 SHUTDOWN_DRAIN_TIMEOUT_MS=2000 \
    ${service_env[@]+"${service_env[@]}"} DATABASE_URL="$baseline_database_url" \
    REDIS_KEY_PREFIX="${REDIS_PREFIX}baseline:" "$baseline_bin" serve >>"$work/baseline.log" 2>&1 &
  baseline_pid=$!
  sd_wait_until 60 "$baseline_bin" healthcheck --addr "$baseline_addr" 2>/dev/null ||
    sd_die "the baseline's service did not become SERVING (log: $(tail -n 5 "$work/baseline.log"))"
}

# baseline_load SIDE SCENARIO KEY: one measured run of SCENARIO against SIDE (current or
# baseline), the CPU of that service, Redis and PostgreSQL beside it.
baseline_load() {
  local side=$1 scenario=$2 key=$3 addr metrics pid database data
  if [[ $side == current ]]; then
    addr=$service_addr metrics=$metrics_addr pid=$service_pid database=supportdesk_bench data=$work/data.json
  else
    addr=$baseline_addr metrics=$baseline_metrics_addr pid=$baseline_pid database=$BASELINE_DATABASE
    data=$work/baseline-data.json
  fi
  # The previous run's writes (CreateTicket's) are flushed now rather than inside this window.
  "${psql_admin[@]}" -c 'CHECKPOINT' >/dev/null
  sql_reset
  "$loadgen_bin" run --scenario "$scenario" --addr "$addr" --data "$data" --metrics-addr "$metrics" \
    --concurrency "$GRPC_CONCURRENCY" --connections "$GRPC_CONNECTIONS" --warmup "$warmup" \
    --duration "$duration" --cpu-of "service=$pid" --cpu-of "redis=$redis_pid" \
    --cpu-of "postgres=$postgres_pid" >"$results/$key.json"
  sql_capture "${key%-[0-9]*}" "$database"
}

# baseline_median KEY: the report of the round with the median req/s becomes KEY.json, with every
# round's req/s beside it in the rounds' order (fleet.sh's rows sort them), so drift shows.
baseline_median() {
  local key=$1
  jq -s -c '. as $rounds | sort_by(.rps) | .[(length - 1) / 2 | floor] + {rounds_rps: ($rounds | map(.rps))}' \
    "$results/$key"-[0-9]*.json >"$work/$key.json"
  rm -f "$results/$key"-[0-9]*.json
  mv "$work/$key.json" "$results/$key.json"
}

# baseline_against SCENARIO: the current tree's report gets its figures over the baseline's
# (`against` in the table's notes).
baseline_against() {
  local current=$results/baseline-current-$1.json baseline=$results/baseline-baseline-$1.json
  jq -c --arg name "$baseline_short" --slurpfile base "$baseline" '
    def over($a; $b): if ($a != null and $b != null and $b > 0) then $a / $b else null end;
    . + {against: {name: $name, rps: over(.rps; $base[0].rps),
                   p50: over(.latency_us.p50; $base[0].latency_us.p50),
                   p99: over(.latency_us.p99; $base[0].latency_us.p99),
                   service_cpu: over(.cpu_us_per_call.service; $base[0].cpu_us_per_call.service)}}' \
    "$current" >"$work/against.json"
  mv "$work/against.json" "$current"
}

# baseline_instructions SIDE BINARY: bench/instructions' GetTicket and CreateTicket lines of
# BINARY, on the bench's PostgreSQL and Redis, as JSON lines in RESULTS/baseline-instructions.jsonl.
baseline_instructions() {
  local side=$1 binary=$2
  say "instructions per call (callgrind): $side"
  DATABASE_ADMIN_URL=postgres://postgres@127.0.0.1:$SD_PG_PORT REDIS_URL=redis://127.0.0.1:$redis_port \
    SERVICE_BIN=$binary LOADGEN_BIN=$loadgen_bin "$bench_dir/instructions" --calls "$instruction_calls" \
    get-ticket create-ticket >"$work/instructions-$side.txt" ||
    sd_die "bench/instructions failed for $side"
  # `get-ticket calls=400 ok=400 cache_hit=1 instructions/call=123456`
  sed -nE 's/^([a-z-]+) +calls=([0-9]+) ok=([0-9]+) cache_hit=([^ ]+) instructions\/call=([0-9]+)$/\1 \2 \3 \4 \5/p' \
    "$work/instructions-$side.txt" | while read -r scenario made ok hit per_call; do
    jq -c -n --arg side "$side" --arg scenario "$scenario" --argjson calls "$made" --argjson ok "$ok" \
      --arg hit "$hit" --argjson per_call "$per_call" \
      '{side: $side, scenario: $scenario, calls: $calls, ok: $ok, cache_hit: $hit, instructions_per_call: $per_call}'
  done >>"$results/baseline-instructions.jsonl"
}

# The instructions table: per scenario, each side's instructions per call and their ratio.
baseline_instructions_table() {
  printf '| scenario | %s (baseline) | %s (current) | current ÷ baseline | target |\n|---|---:|---:|---:|---|\n' \
    "$baseline_short" "$current_short"
  jq -s -r --argjson tolerance "$BASELINE_TOLERANCE" '
    group_by(.scenario) | sort_by(.[0].scenario != "get-ticket")[]
    | (map(select(.side == "baseline"))[0]) as $b | (map(select(.side == "current"))[0]) as $c
    | ($c.instructions_per_call / $b.instructions_per_call) as $ratio
    | ($c.scenario | if . == "get-ticket" then "GetTicket, cache hit" else "CreateTicket" end) as $name
    | "| \($name) (\($c.calls) calls, OK \($b.ok) / \($c.ok)) | \($b.instructions_per_call) | \($c.instructions_per_call) | \($ratio * 1000 | round / 1000) | \(if $ratio <= $tolerance then "✓" else "✗" end) ≤ \($tolerance) |"' \
    "$results/baseline-instructions.jsonl"
}

baseline_compare() {
  local rounds=5 round side scenario
  [[ $mode == quick ]] && rounds=2
  instruction_calls=400
  [[ $mode == quick ]] && instruction_calls=100
  current_short=$(git -C "$root" rev-parse --short HEAD)
  if [[ -n $(git -C "$root" status --porcelain --untracked-files=no) ]]; then
    current_short+="+changes"
  fi

  say "baseline $baseline_short: its database $BASELINE_DATABASE, migrated by its own binary"
  "${psql_admin[@]}" -c "DROP DATABASE IF EXISTS $BASELINE_DATABASE WITH (FORCE)"
  baseline_database_url="postgres://postgres@127.0.0.1:$SD_PG_PORT/$BASELINE_DATABASE"
  DATABASE_URL=$baseline_database_url LOG_FORMAT=pretty "$baseline_bin" migrate --create-database >/dev/null
  pick_port && baseline_addr=127.0.0.1:$picked_port
  pick_port && baseline_metrics_addr=127.0.0.1:$picked_port

  say "starting both services: current $current_short on $service_addr, baseline $baseline_short on $baseline_addr"
  start_service
  start_baseline
  postgres_pid=$(head -n 1 "$SD_PG_INSTANCE/data/postmaster.pid")
  redis_pid=$(redis-cli -p "$redis_port" info server | tr -d '\r' | sed -n 's/^process_id://p')

  say "setting up each: $users customers, $tickets tickets (the current loadgen)"
  "$loadgen_bin" setup --addr "$service_addr" --users "$users" --tickets "$tickets" --out "$work/data.json"
  "$loadgen_bin" setup --addr "$baseline_addr" --users "$users" --tickets "$tickets" \
    --out "$work/baseline-data.json"
  # Both planned for the rows that are there, as bench/run's scenarios are.
  "${psql_bench[@]}" -c 'ANALYZE'
  "${psql_bench[@]}" -d "$BASELINE_DATABASE" -c 'ANALYZE'

  mkdir -p "$results"
  rm -f "$results"/baseline-*.json "$results"/baseline-*.sql.txt "$results"/baseline-instructions.jsonl \
    "$results/baseline.md"
  : >"$rows"
  # GetTicket's rounds first, while the creates of the setup still fill both caches; CreateTicket's
  # after, so that its new tickets never push GetTicket's out of a cache between rounds.
  for scenario in get-ticket create-ticket; do
    for ((round = 1; round <= rounds; round++)); do
      local order=(current baseline)
      ((round % 2 == 0)) && order=(baseline current)
      for side in "${order[@]}"; do
        say "$scenario, round $round of $rounds: $side"
        baseline_load "$side" "$scenario" "baseline-$side-$scenario-$round"
      done
    done
    baseline_median "baseline-baseline-$scenario"
    baseline_median "baseline-current-$scenario"
    baseline_against "$scenario"
  done
  local get_targets="errors=0,undecided=0,hit>=0.99" create_targets="errors=0,undecided=0"
  local within="ratio>=0.9,p50<=$BASELINE_TOLERANCE*ratio"
  row baseline-baseline-get-ticket "GetTicket, cache hit: $baseline_short (baseline)" - "$get_targets"
  row baseline-current-get-ticket "GetTicket, cache hit: $current_short (current)" \
    baseline-baseline-get-ticket "$get_targets,$within"
  row baseline-baseline-create-ticket "CreateTicket: $baseline_short (baseline)" - "$create_targets"
  row baseline-current-create-ticket "CreateTicket: $current_short (current)" \
    baseline-baseline-create-ticket "$create_targets,$within"

  # Counted with nothing else running: the services are stopped (callgrind starts its own).
  stop_pid "$service_pid"
  stop_pid "$baseline_pid"
  service_pid="" baseline_pid=""
  baseline_instructions baseline "$baseline_bin"
  baseline_instructions current "$service_bin"

  {
    printf '# supportdesk bench: against %s (%s run, %s)\n\n' "$baseline_short" "$mode" "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'Machine: %s cores, %s. Current tree %s against %s (%s), both release builds of bench/run, side by side on one throwaway PostgreSQL (fsync off; a database each, migrated by its own binary) and one Redis (a key prefix each), with the same settings, each seeded by the current loadgen (%s customers, %s tickets). gRPC: %s in flight over %s HTTP/2 connections; %s s measured after %s s warm-up; %s rounds a scenario, the two services one after the other, the order swapped every round; a row is the round with its side'"'"'s median req/s. Ratio: current ÷ baseline req/s; the notes give p50, p99 and the service'"'"'s CPU per call as current ÷ baseline.\n\n' \
      "$(nproc)" "$(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
      "$current_short" "$baseline_short" "$baseline_sha" "$users" "$tickets" "$GRPC_CONCURRENCY" \
      "$GRPC_CONNECTIONS" "$duration" "$warmup" "$rounds"
    "$loadgen_bin" table --rows "$rows" --results "$results"
    printf '\nInstructions per call of the whole service process (bench/instructions: callgrind, user space, %s calls 8 at a time after 50 warm-up calls; 30 customers, 1,000 tickets), which the machine'"'"'s load does not move:\n\n' \
      "$instruction_calls"
    baseline_instructions_table
    if ((${#service_env[@]})); then
      printf '\nBoth services ran with: %s\n' "${service_env[*]}"
    fi
  } >"$results/baseline.md"
  cat "$results/baseline.md"
  sd_say "table written to bench/results/baseline.md"
}
