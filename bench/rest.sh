# shellcheck shell=bash disable=SC2154 # the variables are bench/run's, which sources this file
# REST side by side with the seeds' Express stack (issue 45, item 2): sourced by `bench/run`
# (at the end of the default run, or alone with --rest) once the service runs and `loadgen setup`
# has written its data; uses bench/run's variables and functions (say, pick_port, envoy_config,
# start_envoy, stop_pid, ...). Writes bench/results/rest-*.json and bench/results/rest.md;
# bench/README.md ("REST against the seeds' Express stack") says what each row measures.
#
#   1. Envoy in front of the service as users run it (supportdesk envoy-config, everything on, the
#      access log on stdout to a file), and the same configuration cut to its floor (only the
#      transcoder and the router: envoy_variant.py --floor); with --filter-costs, the same
#      configuration without each of its parts in turn as well (envoy_variant.py --without NAME)
#   2. the seeds' Express stack (../shared/peers/express-seed: Node cluster, one worker per core,
#      pg, ioredis cache-aside, JWT), installed once into .tools/express-seed with `npm ci`, on the
#      same PostgreSQL (database express_bench) and Redis (its own logical database), with as many
#      tickets and callers as the service's bench data
#   3. GET one ticket, a page of 20, POST a ticket with an idempotency key, a refused POST: each
#      on both (GET on the floor too, and with --filter-costs without each part of Envoy's
#      configuration), ROUNDS interleaved rounds, the median round of each row

readonly EXPRESS_SEED=${EXPRESS_SEED_DIR:-$root/../shared/peers/express-seed}
readonly EXPRESS_DIR=$SD_TOOLS/express-seed
# Express's keys (`ticket:*`, `idempotency:*`, unprefixed in app.js) go to a logical database of
# their own, and only those patterns are deleted from it afterwards.
readonly EXPRESS_REDIS_DB=11
case $mode in
  quick) rest_rounds=1 rest_seconds=5 rest_warmup=2 ;;
  *) rest_rounds=3 rest_seconds=10 rest_warmup=2 ;;
esac
# With --filter-costs: what each part of Envoy's configuration costs, each left out in turn; GET
# runs through each, and the page without the compressor (its answers are over its 1 KiB).
readonly FILTER_PARTS=(lua access_log buffer cors compressor grpc_web header_mutation header_to_metadata)
# With --envoy-tuning: Envoy's own floor, varied one knob at a time on the users' configuration:
# one worker thread instead of one per core (concurrency_1), no statistics (no_stats), the plain
# GET routes one route a path after the gRPC routes (route_a_path: as before they were joined),
# only the routes GET one ticket takes (routes_of_get_ticket: what the rest of the table costs),
# the transcoder keeping the REST request's route instead of matching again on the gRPC path
# (keep_incoming_route), and each HTTP/2 codec upstream (oghttp2_on, oghttp2_off).
readonly TUNINGS=(concurrency_1 no_stats route_a_path routes_of_get_ticket keep_incoming_route oghttp2_on oghttp2_off)
declare -A TUNING_VARIANT=(
  [concurrency_1]="" [no_stats]="--no-stats" [route_a_path]="--route-a-path"
  [routes_of_get_ticket]="--routes-of-get-ticket"
  [keep_incoming_route]="--keep-incoming-route"
  [oghttp2_on]="--runtime envoy.reloadable_features.http2_use_oghttp2=true"
  [oghttp2_off]="--runtime envoy.reloadable_features.http2_use_oghttp2=false"
)
declare -A TUNING_TITLE=(
  [concurrency_1]="--concurrency 1" [no_stats]="statistics off"
  [route_a_path]="its plain GET routes one route a path, after the gRPC routes (before)"
  [routes_of_get_ticket]="only the routes GET one ticket takes"
  [keep_incoming_route]="the transcoder keeping the REST route (no second match)"
  [oghttp2_on]="upstream HTTP/2 codec oghttp2" [oghttp2_off]="upstream HTTP/2 codec nghttp2"
)
express_pid=""
envoy_users_pid="" envoy_floor_pid="" envoy_before_pid=""
declare -A envoy_without_pid=() envoy_without_port=() envoy_tuned_pid=() envoy_tuned_port=()

# shellcheck disable=SC2329 # called from rest_cleanup
express_clear_keys() {
  local pattern
  for pattern in 'ticket:*' 'idempotency:*'; do
    redis-cli -p "$redis_port" -n "$EXPRESS_REDIS_DB" --scan --pattern "$pattern" |
      xargs -r -n 500 redis-cli -p "$redis_port" -n "$EXPRESS_REDIS_DB" del >/dev/null
  done
}

# shellcheck disable=SC2329 # bench/run's cleanup calls it
rest_cleanup() {
  stop_pid "$express_pid"
  stop_pid "$envoy_users_pid"
  stop_pid "$envoy_floor_pid"
  stop_pid "$envoy_before_pid"
  local part
  for part in "${!envoy_without_pid[@]}"; do stop_pid "${envoy_without_pid[$part]}"; done
  for part in "${!envoy_tuned_pid[@]}"; do stop_pid "${envoy_tuned_pid[$part]}"; done
  express_clear_keys || true
  "${psql_admin[@]}" -c 'DROP DATABASE IF EXISTS express_bench WITH (FORCE)' >/dev/null 2>&1 || true
}
rest_cleanups+=(rest_cleanup)

# --- the Express stack -----------------------------------------------------------------------------

[[ -f $EXPRESS_SEED/app.js && -f $EXPRESS_SEED/package-lock.json ]] ||
  sd_die "the seeds' Express stack is not at $EXPRESS_SEED (EXPRESS_SEED_DIR names another place)"
command -v node >/dev/null 2>&1 || sd_die "node is needed for the Express stack (deploy/local/setup installs it)"
# Installed once, again only when the seed's lockfile changes (its directory is read-only).
if ! cmp -s "$EXPRESS_SEED/package-lock.json" "$EXPRESS_DIR/installed-package-lock.json"; then
  say "installing the seeds' Express stack into $EXPRESS_DIR (npm ci)"
  rm -rf "$EXPRESS_DIR"
  mkdir -p "$EXPRESS_DIR"
  cp "$EXPRESS_SEED"/{app.js,cluster.js,schema.sql,package.json,package-lock.json} "$EXPRESS_DIR/"
  (cd "$EXPRESS_DIR" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
  # Last, so that an interrupted install is done again next time.
  cp "$EXPRESS_SEED/package-lock.json" "$EXPRESS_DIR/installed-package-lock.json"
fi
for file in app.js cluster.js schema.sql; do
  cmp -s "$EXPRESS_SEED/$file" "$EXPRESS_DIR/$file" || cp "$EXPRESS_SEED/$file" "$EXPRESS_DIR/"
done

say "the Express stack's database: as many tickets ($(jq '.tickets | length' "$work/data.json")) and callers as the service's"
"${psql_admin[@]}" -c 'DROP DATABASE IF EXISTS express_bench WITH (FORCE)' -c 'CREATE DATABASE express_bench'
psql_express=("$psql_bin" -X -q -w -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SD_PG_PORT" -U postgres -d express_bench)
"${psql_express[@]}" -f "$EXPRESS_DIR/schema.sql"
express_callers=$(jq '.customers | length' "$work/data.json")
"${psql_express[@]}" -c "INSERT INTO ticket (subject, description, priority, account_id, created_by)
  SELECT 'Ticket ' || n, 'Created for the bench.', (ARRAY['low','medium','high','critical'])[1 + n % 4],
         1, 'customer-' || (n % $express_callers)
  FROM generate_series(1, $(jq '.tickets | length' "$work/data.json")) AS n" -c 'ANALYZE'
express_clear_keys

readonly EXPRESS_JWT_SECRET=bench-express-secret-bench-express-secret
# Its data file in loadgen's shape: the admin (account 1: it reads the tickets and the pages) and
# the customers (account 2: they create tickets), each a token of Express's own JWT. Express's page
# counts its account's tickets on every call, so the tickets created by one round must not land in
# the account the next round's pages read; supportdesk's pages are each customer's own, which new
# requesters' tickets do not touch either.
(cd "$EXPRESS_DIR" && JWT_SECRET=$EXPRESS_JWT_SECRET CALLERS=$express_callers node -e '
  const crypto = require("crypto");
  const jwt = require("jsonwebtoken");
  const key = crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET));
  const token = (sub, accountId) => ({ user_id: sub, email: sub + "@express.example",
    access_token: jwt.sign({ sub, accountId }, key, { expiresIn: "12h" }) });
  const customers = [];
  for (let i = 0; i < Number(process.env.CALLERS); i++) customers.push(token("customer-" + i, 2));
  process.stdout.write(JSON.stringify({ account_slug: "express", admin: token("admin", 1), customers }));
') >"$work/express-callers.json"
"${psql_express[@]}" -tA -c 'SELECT id FROM ticket ORDER BY id' |
  jq -R -s -c --slurpfile callers "$work/express-callers.json" \
    '$callers[0] + {tickets: (split("\n") | map(select(length > 0) | {id: ., requester: null}))}' \
    >"$work/express.json"

pick_port && express_port=$picked_port
say "starting the Express stack (node cluster.js: $(nproc) workers) on 127.0.0.1:$express_port"
(cd "$EXPRESS_DIR" && PORT=$express_port NODE_ENV=production LOG_LEVEL=warn \
  DATABASE_URL="postgres://postgres@127.0.0.1:$SD_PG_PORT/express_bench" \
  REDIS_URL="redis://127.0.0.1:$redis_port/$EXPRESS_REDIS_DB" JWT_SECRET=$EXPRESS_JWT_SECRET \
  RATE_MAX=100000000 OPEN_LIMIT=1000000000 exec node cluster.js) >"$work/express.log" 2>&1 &
express_pid=$!
# shellcheck disable=SC2329 # called through sd_wait_until
express_healthy() {
  kill -0 "$express_pid" 2>/dev/null || sd_die "the Express stack exited (log: $(tail -n 5 "$work/express.log"))"
  curl -sf "http://127.0.0.1:$express_port/health" >/dev/null
}
sd_wait_until 60 express_healthy || sd_die "the Express stack did not answer /health"

# --- the two Envoys ------------------------------------------------------------------------------

say "starting Envoy as users run it (supportdesk envoy-config), and the same cut to its floor"
pick_port && envoy_users_port=$picked_port
pick_port && envoy_users_admin=$picked_port
pick_port && envoy_floor_port=$picked_port
pick_port && envoy_floor_admin=$picked_port
[[ -f $work/supportdesk.pb ]] || "$service_bin" descriptor --out "$work/supportdesk.pb"
UPSTREAM_ADDRESSES=$service_addr "$service_bin" envoy-config --out "$work/envoy-users.rendered.yaml"
ENVOY_ACCESS_LOG=kept envoy_config "$envoy_users_port" "$envoy_users_admin" - "$work/supportdesk.pb" "" \
  "$work/envoy-users.yaml" "$work/envoy-users.rendered.yaml"
"$SD_TOOLS/venv/bin/python" "$bench_dir/envoy_variant.py" --floor <"$work/envoy-users.rendered.yaml" \
  >"$work/envoy-floor.rendered.yaml"
ENVOY_ACCESS_LOG=none envoy_config "$envoy_floor_port" "$envoy_floor_admin" - "$work/supportdesk.pb" "" \
  "$work/envoy-floor.yaml" "$work/envoy-floor.rendered.yaml"
# The users' Envoy writes its access log on stdout, as deploy/local/run has it: to a file.
start_envoy "$work/envoy-users.yaml" "$envoy_users_port" "$work/envoy-users.log"
envoy_users_pid=$LAST_PID
start_envoy "$work/envoy-floor.yaml" "$envoy_floor_port" "$work/envoy-floor.log"
envoy_floor_pid=$LAST_PID
# And as it was before the plain GET routes: every GET through the Lua filter and the buffer.
pick_port && envoy_before_port=$picked_port
pick_port && envoy_before_admin=$picked_port
"$SD_TOOLS/venv/bin/python" "$bench_dir/envoy_variant.py" --without plain_get_routes \
  <"$work/envoy-users.rendered.yaml" >"$work/envoy-before.rendered.yaml"
ENVOY_ACCESS_LOG=kept envoy_config "$envoy_before_port" "$envoy_before_admin" - "$work/supportdesk.pb" "" \
  "$work/envoy-before.yaml" "$work/envoy-before.rendered.yaml"
start_envoy "$work/envoy-before.yaml" "$envoy_before_port" "$work/envoy-before.log"
envoy_before_pid=$LAST_PID
if ((filter_costs)); then
  for part in "${FILTER_PARTS[@]}"; do
    pick_port && envoy_without_port[$part]=$picked_port
    pick_port && admin_port=$picked_port
    "$SD_TOOLS/venv/bin/python" "$bench_dir/envoy_variant.py" --without "$part" \
      <"$work/envoy-users.rendered.yaml" >"$work/envoy-without-$part.rendered.yaml"
    access_log=kept
    [[ $part == access_log ]] && access_log=none
    ENVOY_ACCESS_LOG=$access_log envoy_config "${envoy_without_port[$part]}" "$admin_port" - \
      "$work/supportdesk.pb" "" "$work/envoy-without-$part.yaml" "$work/envoy-without-$part.rendered.yaml"
    start_envoy "$work/envoy-without-$part.yaml" "${envoy_without_port[$part]}" "$work/envoy-without-$part.log"
    envoy_without_pid[$part]=$LAST_PID
  done
fi

if ((envoy_tuning)); then
  for tuning in "${TUNINGS[@]}"; do
    pick_port && envoy_tuned_port[$tuning]=$picked_port
    pick_port && admin_port=$picked_port
    read -r -a variant <<<"${TUNING_VARIANT[$tuning]}"
    "$SD_TOOLS/venv/bin/python" "$bench_dir/envoy_variant.py" "${variant[@]}" \
      <"$work/envoy-users.rendered.yaml" >"$work/envoy-$tuning.rendered.yaml"
    ENVOY_ACCESS_LOG=kept envoy_config "${envoy_tuned_port[$tuning]}" "$admin_port" - \
      "$work/supportdesk.pb" "" "$work/envoy-$tuning.yaml" "$work/envoy-$tuning.rendered.yaml"
    flags=()
    [[ $tuning == concurrency_1 ]] && flags=(--concurrency 1)
    start_envoy "$work/envoy-$tuning.yaml" "${envoy_tuned_port[$tuning]}" "$work/envoy-$tuning.log" "${flags[@]}"
    envoy_tuned_pid[$tuning]=$LAST_PID
  done
fi

# --- the runs ----------------------------------------------------------------------------------

# rest_run KEY SCENARIO ADDR DATA SIDE: one run; SIDE `service` or `express` names the processes
# whose CPU is reported (Envoy's is the one behind ADDR). GET one ticket is a fixed request (the
# admin's token, a ticket picked from the list) and oha drives it on both sides (`loadgen oha`);
# the page, the POSTs and the refusal carry a caller or an idempotency key of their own on every
# request, which loadgen drives (bench/README.md, "Why these drivers").
rest_run() {
  local key=$1 scenario=$2 addr=$3 data=$4 side=$5 envoy_pid=${6:-}
  local -a cpu=(--cpu-of "redis=$redis_pid" --cpu-of "postgres=$postgres_pid")
  if [[ $side == service ]]; then
    cpu+=(--cpu-of "envoy=$envoy_pid" --cpu-of "service=$service_pid" --metrics-addr "$metrics_addr")
  else
    cpu+=(--cpu-of "node=$express_pid")
  fi
  local driver=run
  [[ $scenario == rest-get-ticket || $scenario == express-get-ticket ]] && driver=oha
  "$loadgen_bin" "$driver" --scenario "$scenario" --addr "$addr" --data "$data" \
    --concurrency "$REST_CONNECTIONS" --warmup "$rest_warmup" --duration "$rest_seconds" \
    "${cpu[@]}" >"$results/$key.json"
}

users_addr=127.0.0.1:$envoy_users_port
floor_addr=127.0.0.1:$envoy_floor_port
express_addr=127.0.0.1:$express_port

# rest_settle: before each round's GETs, PostgreSQL's checkpoint is taken (the previous round's
# creates left it dirty pages to write, which the first rows of a round would otherwise pay for)
# and every ticket is read once on each side, so that every GET is a cache hit (the creates of the
# previous round have pushed tickets out of the service's bounded cache).
rest_settle() {
  "${psql_admin[@]}" -c 'CHECKPOINT' >/dev/null
  "$loadgen_bin" oha --scenario rest-get-ticket --addr "$users_addr" --data "$work/data.json" \
    --concurrency "$REST_CONNECTIONS" --warmup 0 --duration 3 >/dev/null
  "$loadgen_bin" oha --scenario express-get-ticket --addr "$express_addr" --data "$work/express.json" \
    --concurrency "$REST_CONNECTIONS" --warmup 0 --duration 3 >/dev/null
}

# The GET rows, each `KEY SCENARIO ADDR DATA SIDE ENVOY_PID`. Every round runs them in a different
# order (rotated by one row a round), so that no row always runs first, right after the settling,
# or last, as the VM warms up or slows down.
get_rows=(
  "rest-get-service rest-get-ticket $users_addr $work/data.json service $envoy_users_pid"
  "rest-get-floor rest-get-ticket $floor_addr $work/data.json service $envoy_floor_pid"
  "rest-get-before rest-get-ticket 127.0.0.1:$envoy_before_port $work/data.json service $envoy_before_pid"
  "rest-get-express express-get-ticket $express_addr $work/express.json express"
)
if ((filter_costs)); then
  for part in "${FILTER_PARTS[@]}"; do
    get_rows+=("rest-get-without-$part rest-get-ticket 127.0.0.1:${envoy_without_port[$part]} $work/data.json service ${envoy_without_pid[$part]}")
  done
fi
if ((envoy_tuning)); then
  for tuning in "${TUNINGS[@]}"; do
    get_rows+=("rest-get-tuned-$tuning rest-get-ticket 127.0.0.1:${envoy_tuned_port[$tuning]} $work/data.json service ${envoy_tuned_pid[$tuning]}")
  done
fi

# Only this file's reports: the default run's own REST rows (rest-hello, rest-get-ticket) were
# written before it and are in its table.
rm -f "$results"/rest-get-{service,floor,before,express,without-,tuned-}*.json \
  "$results"/rest-{list,refused,create}-*.json "$results/rest.md"
rest_rows=$work/rest-rows
: >"$rest_rows"
for ((round = 1; round <= rest_rounds; round++)); do
  say "REST round $round of $rest_rounds: settling (checkpoint, both caches filled)"
  rest_settle
  say "REST round $round of $rest_rounds: GET one ticket"
  for ((i = 0; i < ${#get_rows[@]}; i++)); do
    read -r key scenario addr data side pid <<<"${get_rows[(i + round - 1) % ${#get_rows[@]}]}"
    rest_run "$key-$round" "$scenario" "$addr" "$data" "$side" "$pid"
  done
  say "REST round $round of $rest_rounds: a page of 20"
  rest_run "rest-list-service-$round" rest-list-tickets "$users_addr" "$work/data.json" service "$envoy_users_pid"
  rest_run "rest-list-express-$round" express-list-tickets "$express_addr" "$work/express.json" express
  rest_run "rest-list-before-$round" rest-list-tickets "127.0.0.1:$envoy_before_port" "$work/data.json" service \
    "$envoy_before_pid"
  if ((filter_costs)); then
    rest_run "rest-list-without-compressor-$round" rest-list-tickets \
      "127.0.0.1:${envoy_without_port[compressor]}" "$work/data.json" service "${envoy_without_pid[compressor]}"
  fi
  say "REST round $round of $rest_rounds: a refused POST"
  rest_run "rest-refused-service-$round" rest-unknown-field "$users_addr" "$work/data.json" service "$envoy_users_pid"
  rest_run "rest-refused-express-$round" express-invalid-ticket "$express_addr" "$work/express.json" express
  say "REST round $round of $rest_rounds: POST a ticket"
  rest_run "rest-create-service-$round" rest-create-ticket "$users_addr" "$work/data.json" service "$envoy_users_pid"
  rest_run "rest-create-express-$round" express-create-ticket "$express_addr" "$work/express.json" express
  if ((filter_costs)); then
    for part in lua buffer; do
      rest_run "rest-create-without-$part-$round" rest-create-ticket "127.0.0.1:${envoy_without_port[$part]}" \
        "$work/data.json" service "${envoy_without_pid[$part]}"
    done
  fi
done

# rest_median KEY: the report of the round with the median req/s becomes KEY.json, with every
# round's req/s beside it.
rest_median() {
  jq -s -c 'sort_by(.rps) | .[(length - 1) / 2 | floor] + {rounds_rps: map(.rps)}' \
    "$results/$1"-[0-9]*.json >"$work/$1.json"
  rm -f "$results/$1"-[0-9]*.json
  mv "$work/$1.json" "$results/$1.json"
}
for key in rest-{get,list,refused,create}-{service,express} rest-get-floor rest-{get,list}-before; do
  rest_median "$key"
done
if ((filter_costs)); then
  for part in "${FILTER_PARTS[@]}"; do rest_median "rest-get-without-$part"; done
  rest_median rest-list-without-compressor
  rest_median rest-create-without-lua
  rest_median rest-create-without-buffer
fi
if ((envoy_tuning)); then
  for tuning in "${TUNINGS[@]}"; do rest_median "rest-get-tuned-$tuning"; done
fi

rest_row() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$rest_rows"
}
rest_row rest-get-express "Express GET one ticket (cache hit)" - "errors=0"
rest_row rest-get-service "supportdesk GET one ticket via Envoy as users run it" rest-get-express \
  "errors=0,undecided=0,hit>=0.99,ratio>=1.2,p99<=ratio,cpu.envoy<=1.25*rest-get-floor"
rest_row rest-get-floor "supportdesk GET one ticket via Envoy's floor (transcoder and router only)" rest-get-express "errors=0"
rest_row rest-get-before "supportdesk GET one ticket via Envoy without the plain GET routes (Lua and buffer on every GET)" \
  rest-get-express "errors=0"
if ((filter_costs)); then
  for part in "${FILTER_PARTS[@]}"; do
    rest_row "rest-get-without-$part" "supportdesk GET one ticket via Envoy without $part" rest-get-service "errors=0"
  done
fi
if ((envoy_tuning)); then
  for tuning in "${TUNINGS[@]}"; do
    rest_row "rest-get-tuned-$tuning" "supportdesk GET one ticket via Envoy as users run it, ${TUNING_TITLE[$tuning]}" \
      rest-get-service "errors=0"
  done
fi
rest_row rest-list-express "Express GET a page of 20" - "errors=0"
rest_row rest-list-service "supportdesk GET a page of 20 via Envoy" rest-list-express "errors=0,undecided=0,ratio>=1.0"
rest_row rest-list-before "supportdesk GET a page of 20 via Envoy without the plain GET routes (Lua and buffer on every GET)" \
  rest-list-service "errors=0"
if ((filter_costs)); then
  rest_row rest-list-without-compressor "supportdesk GET a page of 20 via Envoy without compressor" rest-list-service "errors=0"
fi
rest_row rest-create-express "Express POST a ticket" - "errors=0"
rest_row rest-create-service "supportdesk POST a ticket (idempotency key) via Envoy" rest-create-express \
  "errors=0,undecided=0,ratio>=1.0"
if ((filter_costs)); then
  for part in lua buffer; do
    rest_row "rest-create-without-$part" "supportdesk POST a ticket via Envoy without $part" rest-create-service "errors=0"
  done
fi
rest_row rest-refused-express "Express POST refused (invalid priority: 422)" - "errors=0"
rest_row rest-refused-service "supportdesk POST refused (unknown field: 400)" rest-refused-express "errors=0"

{
  printf '## REST against the seeds'"'"' Express stack (%s run, %s)\n\n' "$mode" "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'Machine: %s cores, %s. %s HTTP/1.1 keep-alive connections, one request each in flight; %s s measured after %s s warm-up; %s interleaved round(s), the median round a row (every round in its notes). Express: node cluster.js, %s workers, on the same PostgreSQL and Redis. CPU µs per call = ms of CPU per 1,000 requests.\n\n' \
    "$(nproc)" "$(sed -nE 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)" \
    "$REST_CONNECTIONS" "$rest_seconds" "$rest_warmup" "$rest_rounds" "$(nproc)"
  "$loadgen_bin" table --rows "$rest_rows" --results "$results"
} >"$results/rest.md"
