#!/usr/bin/env bash
# Shared functions of the deploy/local scripts (setup, test, run): messages, apt installs, and
# process supervision: finding PostgreSQL and Redis (the caller's, the usual local ones, or throwaway instances that
# these scripts start under .tools/run/ and stop again). Sourced, never run: it does nothing by
# itself. ensure_postgres and ensure_redis must run in the calling shell (not in $(...)), so
# that their exports and the record of throwaway instances stay in it.
# shellcheck shell=bash

SD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
SD_TOOLS="$SD_ROOT/.tools"
SD_RUN_DIR="$SD_TOOLS/run"
SD_NAME="deploy/local/${0##*/}"
SD_WAIT_SECONDS=30
SD_APT_UPDATED=0
# Throwaway instances started by this shell (instance directories), stopped by
# sd_stop_throwaway_services.
SD_PG_INSTANCE=""
SD_REDIS_INSTANCE=""
# The ports of the local servers sd_local_postgres and sd_local_redis found or started.
SD_PG_PORT=""
SD_REDIS_PORT=""

: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME

# rustup puts cargo in ~/.cargo/bin; a shell that never read ~/.profile (CI) may lack it.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
  PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
  export PATH
fi

sd_say() {
  printf '%s: %s\n' "$SD_NAME" "$*" >&2
}

sd_die() {
  sd_say "error: $*"
  exit 1
}

sd_is_root() {
  [[ $(id -u) == 0 ]]
}

# apt-get install, with one apt-get update first per process. Root only.
sd_apt_install() {
  sd_is_root || sd_die "cannot install Debian packages ($*) without root: install them yourself"
  export DEBIAN_FRONTEND=noninteractive
  if [[ $SD_APT_UPDATED == 0 ]]; then
    sd_say "running apt-get update"
    apt-get update -qq >/dev/null || sd_die "apt-get update failed"
    SD_APT_UPDATED=1
  fi
  sd_say "installing Debian packages: $*"
  apt-get install -y -qq "$@" >/dev/null || sd_die "apt-get install -y $* failed"
}

# Runs a command until it succeeds, at most $1 seconds. Returns 1 on time-out.
sd_wait_until() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# True when something accepts TCP connections on 127.0.0.1:$1.
sd_port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A TCP port nothing listens on at 127.0.0.1 (never 5432 or 6379), for a throwaway server. The
# server itself fails to start should another take the port first.
sd_free_port() {
  local port
  for _ in {1..50}; do
    port=$((20000 + RANDOM % 30000))
    if [[ $port != 5432 && $port != 6379 ]] && ! sd_port_in_use "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  sd_die "cannot find a free TCP port on 127.0.0.1"
}

# A new instance directory under .tools/run/, named KIND.OWNERPID.XXXXXX so that an instance
# left by a killed run can be recognised (its owner is gone) and removed.
sd_new_instance_dir() {
  mkdir -p "$SD_RUN_DIR"
  mktemp -d "$SD_RUN_DIR/$1.$$.XXXXXX"
}

# --- PostgreSQL --------------------------------------------------------------------------------

# The newest installed server's bin directory (with initdb, pg_ctl and postgres).
sd_pg_bindir() {
  local dir found=""
  while IFS= read -r dir; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      found=$dir
    fi
  done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V)
  if [[ -z $found ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    found=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
  fi
  [[ -n $found ]] && printf '%s\n' "$found"
}

# The path of a PostgreSQL client program: from PATH, else from the newest server's bin.
sd_pg_tool() {
  local bindir
  if command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  elif bindir=$(sd_pg_bindir) && [[ -x $bindir/$1 ]]; then
    printf '%s\n' "$bindir/$1"
  else
    return 1
  fi
}

# True when PostgreSQL on $1:$2 lets user postgres in without a password.
sd_pg_answers() {
  local isready psql
  isready=$(sd_pg_tool pg_isready) && psql=$(sd_pg_tool psql) || return 1
  "$isready" -q -h "$1" -p "$2" -U postgres -d postgres -t 3 || return 1
  PGCONNECT_TIMEOUT=5 "$psql" -X -q -w -h "$1" -p "$2" -U postgres -d postgres \
    -tAc 'select 1' >/dev/null 2>&1
}

# Runs a command as the owner of throwaway PostgreSQL data: the postgres system user when we
# are root (PostgreSQL refuses to run as root), else ourselves.
sd_as_pg_owner() {
  if sd_is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

sd_ensure_postgres_user() {
  id -u postgres >/dev/null 2>&1 && return 0
  sd_say "creating the postgres system user"
  local group_flag=(--user-group)
  getent group postgres >/dev/null 2>&1 && group_flag=(--gid postgres)
  useradd --system "${group_flag[@]}" --home-dir /var/lib/postgresql --no-create-home \
    --shell /usr/sbin/nologin postgres || sd_die "cannot create the postgres system user"
}

sd_start_throwaway_postgres() {
  local bindir dir port
  if ! bindir=$(sd_pg_bindir); then
    sd_is_root || sd_die "PostgreSQL is not running on 127.0.0.1:5432 (as user postgres, no" \
      "password) and its server binaries (initdb, pg_ctl) are not installed: install" \
      "PostgreSQL (Debian: apt-get install postgresql), or export" \
      "SUPPORTDESK_TEST_DATABASE_URL=postgres://USER@HOST:PORT/postgres (a user that may CREATE DATABASE)"
    sd_apt_install postgresql
    bindir=$(sd_pg_bindir) || sd_die "PostgreSQL installed, but initdb/pg_ctl are still not found"
  fi
  sd_is_root && sd_ensure_postgres_user
  dir=$(sd_new_instance_dir postgres)
  SD_PG_INSTANCE=$dir
  printf '%s\n' "$bindir" >"$dir/bindir"
  if sd_is_root; then
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      # The work tree is out of the postgres user's reach (a home directory of mode 700).
      rm -rf "$dir"
      dir=$(mktemp -d "${TMPDIR:-/tmp}/supportdesk-postgres.$$.XXXXXX")
      SD_PG_INSTANCE=$dir
      printf '%s\n' "$bindir" >"$dir/bindir"
      chown postgres: "$dir"
    fi
  fi
  port=$(sd_free_port)
  sd_say "starting a throwaway PostgreSQL ($bindir) on 127.0.0.1:$port, data in $dir"
  if ! sd_as_pg_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    sd_die "initdb failed (log above)"
  fi
  cat >>"$dir/data/postgresql.conf" <<EOF

# Throwaway instance of deploy/local: TCP on loopback only, no Unix socket, no durability.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  if ! sd_as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
    -t "$SD_WAIT_SECONDS" -s start >/dev/null 2>&1; then
    tail -n 20 "$dir/postgres.log" >&2 || true
    sd_die "the throwaway PostgreSQL did not start within ${SD_WAIT_SECONDS}s (log above: $dir/postgres.log)"
  fi
  if ! sd_wait_until "$SD_WAIT_SECONDS" sd_pg_answers 127.0.0.1 "$port"; then
    tail -n 20 "$dir/postgres.log" >&2 || true
    sd_die "the throwaway PostgreSQL on 127.0.0.1:$port does not answer after ${SD_WAIT_SECONDS}s"
  fi
  SD_PG_PORT=$port
}

sd_stop_postgres_instance() {
  local dir=$1 bindir pid=""
  [[ -f $dir/data/postmaster.pid ]] && pid=$(head -n 1 "$dir/data/postmaster.pid")
  # Only a live postmaster: a stale pid file may name an unrelated process by now.
  if [[ -n $pid && -f $dir/bindir ]] && sd_pid_is "$pid" postgres; then
    bindir=$(<"$dir/bindir")
    sd_as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t "$SD_WAIT_SECONDS" -s stop \
      >/dev/null 2>&1 ||
      sd_as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -s stop >/dev/null 2>&1 ||
      sd_say "warning: could not stop the throwaway PostgreSQL in $dir"
  fi
  rm -rf "$dir"
}

# Sets SD_PG_PORT to a PostgreSQL on 127.0.0.1 that lets user postgres in without a password
# (and so may CREATE DATABASE): the usual one on 5432 (unless SUPPORTDESK_THROWAWAY_SERVICES=1),
# else a throwaway instance.
sd_local_postgres() {
  if [[ ${SUPPORTDESK_THROWAWAY_SERVICES:-} != 1 ]] && sd_pg_answers 127.0.0.1 5432; then
    SD_PG_PORT=5432
    return 0
  fi
  sd_reap_stale_instances
  sd_start_throwaway_postgres
}

# Exports SUPPORTDESK_TEST_DATABASE_URL, an admin URL (database `postgres`) of a server where
# tests may CREATE DATABASE: the caller's value, else sd_local_postgres's server.
ensure_postgres() {
  if [[ -z ${SUPPORTDESK_TEST_DATABASE_URL:-} ]]; then
    sd_local_postgres
    SUPPORTDESK_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$SD_PG_PORT/postgres"
  fi
  export SUPPORTDESK_TEST_DATABASE_URL
}

# --- Redis -------------------------------------------------------------------------------------

sd_redis_answers() {
  command -v redis-cli >/dev/null 2>&1 || return 1
  [[ $(timeout 5 redis-cli -h "$1" -p "$2" ping 2>/dev/null) == PONG ]]
}

sd_start_throwaway_redis() {
  local dir port
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    sd_is_root || sd_die "Redis is not running on 127.0.0.1:6379 and redis-server/redis-cli are" \
      "not installed: install Redis (Debian: apt-get install redis-server), or export" \
      "SUPPORTDESK_TEST_REDIS_URL=redis://HOST:PORT"
    sd_apt_install redis-server
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
      sd_die "redis-server installed, but redis-server/redis-cli are still not found"
    fi
  fi
  dir=$(sd_new_instance_dir redis)
  SD_REDIS_INSTANCE=$dir
  port=$(sd_free_port)
  sd_say "starting a throwaway Redis on 127.0.0.1:$port, data in $dir"
  if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
    >/dev/null 2>&1; then
    tail -n 20 "$dir/redis.log" >&2 || true
    sd_die "the throwaway redis-server failed to start"
  fi
  if ! sd_wait_until "$SD_WAIT_SECONDS" sd_redis_answers 127.0.0.1 "$port"; then
    tail -n 20 "$dir/redis.log" >&2 || true
    sd_die "the throwaway Redis on 127.0.0.1:$port does not answer after ${SD_WAIT_SECONDS}s (log: $dir/redis.log)"
  fi
  SD_REDIS_PORT=$port
}

sd_stop_redis_instance() {
  local dir=$1 pid=""
  [[ -f $dir/redis.pid ]] && pid=$(<"$dir/redis.pid")
  # SIGTERM: Redis exits at once (nothing to save). Only if the pid is still a redis-server.
  if [[ -n $pid ]] && sd_pid_is "$pid" redis-server; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! sd_wait_until 10 sd_pid_gone "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
}

sd_pid_gone() {
  ! kill -0 "$1" 2>/dev/null
}

# True when process $1 is alive and its command name is $2.
sd_pid_is() {
  [[ $1 =~ ^[0-9]+$ && -r /proc/$1/comm && $(<"/proc/$1/comm") == "$2" ]]
}

# Sets SD_REDIS_PORT to a Redis on 127.0.0.1: the usual one on 6379 (unless
# SUPPORTDESK_THROWAWAY_SERVICES=1), else a throwaway instance.
sd_local_redis() {
  if [[ ${SUPPORTDESK_THROWAWAY_SERVICES:-} != 1 ]] && sd_redis_answers 127.0.0.1 6379; then
    SD_REDIS_PORT=6379
    return 0
  fi
  sd_reap_stale_instances
  sd_start_throwaway_redis
}

# Exports SUPPORTDESK_TEST_REDIS_URL: the caller's value, else sd_local_redis's server.
ensure_redis() {
  if [[ -z ${SUPPORTDESK_TEST_REDIS_URL:-} ]]; then
    sd_local_redis
    SUPPORTDESK_TEST_REDIS_URL="redis://127.0.0.1:$SD_REDIS_PORT"
  fi
  export SUPPORTDESK_TEST_REDIS_URL
}

# --- clean-up ----------------------------------------------------------------------------------

# Stops the throwaway instances this shell started. For an EXIT trap: never fails.
sd_stop_throwaway_services() {
  if [[ -n $SD_PG_INSTANCE ]]; then
    sd_stop_postgres_instance "$SD_PG_INSTANCE" || true
    SD_PG_INSTANCE=""
  fi
  if [[ -n $SD_REDIS_INSTANCE ]]; then
    sd_stop_redis_instance "$SD_REDIS_INSTANCE" || true
    SD_REDIS_INSTANCE=""
  fi
}

# Stops and removes throwaway instances whose owning script is gone (killed before its trap
# could run).
sd_reap_stale_instances() {
  local dir base owner
  for dir in "$SD_RUN_DIR"/postgres.* "$SD_RUN_DIR"/redis.* \
    "${TMPDIR:-/tmp}"/supportdesk-postgres.*; do
    [[ -d $dir ]] || continue
    base=${dir##*/}
    owner=${base#*.}
    owner=${owner%%.*}
    [[ $owner =~ ^[0-9]+$ ]] || continue
    if [[ $owner == "$$" ]] || kill -0 "$owner" 2>/dev/null; then
      continue
    fi
    sd_say "removing a throwaway instance left by an earlier run: $dir"
    case $base in
      *postgres.*) sd_stop_postgres_instance "$dir" ;;
      redis.*) sd_stop_redis_instance "$dir" ;;
    esac
  done
}

# --- CPU load (deploy/local/test --load) ---------------------------------------------------------

# The processes keeping the cores busy, stopped by sd_stop_cpu_load.
SD_LOAD_PIDS=()

# Keeps every core busy until sd_stop_cpu_load: stress-ng --cpu <cores> (installed from Debian
# when missing and we are root), else one `yes` per core.
sd_start_cpu_load() {
  local cores
  cores=$(nproc)
  if ! command -v stress-ng >/dev/null 2>&1 && sd_is_root; then
    sd_apt_install stress-ng
  fi
  if command -v stress-ng >/dev/null 2>&1; then
    stress-ng --cpu "$cores" --quiet >/dev/null 2>&1 &
    SD_LOAD_PIDS+=("$!")
    sd_say "CPU load: stress-ng --cpu $cores (pid $!)"
  else
    local n
    for ((n = 0; n < cores; n++)); do
      yes >/dev/null &
      SD_LOAD_PIDS+=("$!")
    done
    sd_say "CPU load: $cores x yes (stress-ng is not installed)"
  fi
}

sd_stop_cpu_load() {
  local pid
  for pid in "${SD_LOAD_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SD_LOAD_PIDS=()
}
