#!/usr/bin/env bash
# A STAC API on loopback for the tests: stac-fastapi-pgstac on PostgreSQL 15 + PostGIS.
#
#   scripts/services/stac-api.sh install                  # apt-get PostgreSQL 15 + PostGIS,
#                                                         # and the server's virtualenv
#   scripts/services/stac-api.sh start                    # PostgreSQL, pypgstac migrate, uvicorn
#   scripts/services/stac-api.sh load COLLECTIONS ITEMS   # pypgstac load --method upsert
#   scripts/services/stac-api.sh delete COLLECTION_ID...  # remove collections and their items
#   scripts/services/stac-api.sh status                   # exit 0 when the API answers
#   scripts/services/stac-api.sh stop                     # stop what `start` started
#   scripts/services/stac-api.sh url                      # print the API URL
#
# State lives in .services/stac-api/ under the repository (git ignores it): the virtualenv
# (venv/), uvicorn's pid file and log. The PostgreSQL cluster (data, unix socket, log) lives
# in pg/ there too; PostgreSQL refuses to run as root, so under root it runs as the
# `postgres` user, and when that user cannot reach the repository (a checkout under /root)
# the cluster goes to /var/tmp/lazyraster-stac-api-<hash>/ instead (pg.path records where).
# PostgreSQL listens on 127.0.0.1 only, with trust authentication: it is a test fixture.
# uvicorn is started directly on 127.0.0.1 (the package's own entry point binds 0.0.0.0),
# with the app factory `stac_fastapi.pgstac.app:create_app`.
# The pgstac setting `context` is `on`, so searches report matched counts.
# `stop` only stops the uvicorn named in our pid file and the cluster in our data directory.
#
# Environment: LAZYRASTER_STAC_API_PORT (default 8766), LAZYRASTER_PGSTAC_PORT (default
# 5439; both read by `start`, which records them in the state directory for the other
# commands), LAZYRASTER_STAC_API_STATE (state directory), LAZYRASTER_PG_BINDIR (default
# /usr/lib/postgresql/15/bin), LAZYRASTER_STAC_API_PYTHON (python for the virtualenv,
# default python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${LAZYRASTER_STAC_API_STATE:-$REPO/.services/stac-api}"
PGBIN="${LAZYRASTER_PG_BINDIR:-/usr/lib/postgresql/15/bin}"
PYTHON="${LAZYRASTER_STAC_API_PYTHON:-python3}"
VENV="$STATE/venv"
REQUIREMENTS="$REPO/scripts/services/stac-api-requirements.txt"
UVICORN_PID="$STATE/uvicorn.pid"
UVICORN_LOG="$STATE/uvicorn.log"
DB=pgstac
PG_SUPERUSER=postgres
PORTS_FILE="$STATE/ports"  # "API_PORT PG_PORT" of the last start

set_ports() {  # set_ports API_PORT PG_PORT
  API_PORT="$1"
  PG_PORT="$2"
  DSN="postgresql://$PG_SUPERUSER@127.0.0.1:$PG_PORT/$DB"
  API_URL="http://127.0.0.1:$API_PORT"
}
set_ports "${LAZYRASTER_STAC_API_PORT:-8766}" "${LAZYRASTER_PGSTAC_PORT:-5439}"

use_recorded_ports() {  # talk to the servers on the ports they were started with
  local api pg
  if [ -s "$PORTS_FILE" ] && read -r api pg <"$PORTS_FILE"; then set_ports "$api" "$pg"; fi
}

say() { printf 'stac-api.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

alive() {  # alive PID: the process exists and is not a zombie awaiting its reaper
  local state
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

have_postgres() {
  [ -x "$PGBIN/postgres" ] && [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] &&
    [ -x "$PGBIN/psql" ] && ls /usr/share/postgresql/15/extension/postgis.control >/dev/null 2>&1
}

have_venv() {
  [ -x "$VENV/bin/uvicorn" ] && [ -x "$VENV/bin/pypgstac" ] &&
    cmp -s "$REQUIREMENTS" "$VENV/.requirements" 2>/dev/null
}

cmd_install() {
  if have_postgres; then
    say "PostgreSQL 15 and PostGIS are installed already"
  else
    [ "$(id -u)" = 0 ] || die "installing PostgreSQL needs root (apt-get)"
    # Keep the packages' maintainer scripts from starting the system's PostgreSQL: we run
    # our own cluster. The policy file is removed again if we created it.
    local policy=/usr/sbin/policy-rc.d created_policy=0 status=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod +x "$policy"
      created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq &&
      apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
        postgresql-15 postgresql-client-15 postgresql-15-postgis-3 >/dev/null; } || status=$?
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
    [ "$status" = 0 ] || die "apt-get install postgresql-15 postgresql-15-postgis-3 failed ($status)"
    have_postgres || die "PostgreSQL 15 or PostGIS is still missing under $PGBIN"
    say "installed PostgreSQL 15 and PostGIS"
  fi
  if have_venv; then
    say "the server's virtualenv is up to date ($VENV)"
  else
    mkdir -p "$STATE"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" ||
      die "could not create a virtualenv with $PYTHON (set LAZYRASTER_STAC_API_PYTHON)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" ||
      die "pip install -r $REQUIREMENTS failed"
    cp "$REQUIREMENTS" "$VENV/.requirements"
    say "installed the server in $VENV"
  fi
}

as_pg() {  # run a PostgreSQL server command as a user PostgreSQL accepts
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_dir() {  # print the directory holding the cluster, creating it on first use
  if [ -s "$STATE/pg.path" ]; then
    cat "$STATE/pg.path"
    return 0
  fi
  mkdir -p "$STATE"
  local dir="$STATE/pg"
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      rmdir "$dir"
      dir="/var/tmp/lazyraster-stac-api-$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)"
      mkdir -p "$dir"
      chown postgres: "$dir"
      chmod 700 "$dir"
    fi
  fi
  echo "$dir" >"$STATE/pg.path"
  echo "$dir"
}

pg_running() {
  local data
  data="$(pg_dir)/data"
  [ -s "$data/postmaster.pid" ] || return 1
  as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

uvicorn_pid() {  # print the pid of our uvicorn and succeed, or fail
  [ -s "$UVICORN_PID" ] || return 1
  local pid
  pid="$(cat "$UVICORN_PID")"
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "stac_fastapi.pgstac.app:create_app" || return 1
  echo "$pid"
}

api_answers() { curl -sf -o /dev/null --max-time 5 "$API_URL/_mgmt/ping"; }

psql_run() {  # psql_run DATABASE ARGS...
  local db="$1"
  shift
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" -d "$db" "$@"
}

start_postgres() {
  local dir data
  dir="$(pg_dir)"
  data="$dir/data"
  if [ ! -s "$data/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in $data"
    as_pg "$PGBIN/initdb" -D "$data" -U "$PG_SUPERUSER" --auth=trust --no-sync -E UTF8 \
      --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || die "initdb failed; see $dir/initdb.log"
    # A throw-away test database: durability off, small memory.
    cat >>"$data/postgresql.conf" <<CONF

# Added by scripts/services/stac-api.sh: a test fixture, not a production server.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 64MB
max_connections = 40
CONF
  fi
  if pg_running; then
    return 0
  fi
  as_pg mkdir -p "$dir/run"
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir/run" start >/dev/null ||
    die "PostgreSQL did not start (is port $PG_PORT in use?); see $dir/postgres.log"
}

migrate() {
  if ! psql_run postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" \
    2>/dev/null | grep -q 1; then
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPERUSER" "$DB"
  fi
  local wanted have
  wanted="$("$VENV/bin/python" -c "import pypgstac; print(pypgstac.__version__)")"
  have="$(psql_run "$DB" -tAc "SELECT pgstac.get_version()" 2>/dev/null || true)"
  if [ "$have" != "$wanted" ]; then
    say "pypgstac migrate (database at '${have:-none}', pypgstac $wanted)"
    "$VENV/bin/pypgstac" migrate --dsn "$DSN" >"$STATE/migrate.log" 2>&1 ||
      die "pypgstac migrate failed; see $STATE/migrate.log"
  fi
  # Matched counts in search results (numberMatched) need the context setting.
  psql_run "$DB" -c "INSERT INTO pgstac.pgstac_settings (name, value) VALUES ('context', 'on')
               ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
}

start_uvicorn() {
  local pid
  if pid="$(uvicorn_pid)"; then
    if api_answers; then return 0; fi
    say "uvicorn (pid $pid) does not answer; restarting it"
    kill -TERM "$pid"
    sleep 1
  fi
  # Run from the state directory: the server's settings would read a stray .env file in
  # the working directory. setsid: the server outlives the shell that started it.
  (
    cd "$STATE"
    PGUSER="$PG_SUPERUSER" PGPASSWORD=unused PGHOST=127.0.0.1 PGPORT="$PG_PORT" \
      PGDATABASE="$DB" DB_MIN_CONN_SIZE=1 DB_MAX_CONN_SIZE=5 \
      STAC_FASTAPI_TITLE="lazyraster test STAC API" STAC_FASTAPI_LANDING_ID=lazyraster-test \
      STAC_FASTAPI_DESCRIPTION="stac-fastapi-pgstac on loopback for the lazyraster tests" \
      STAC_FASTAPI_VERSION=test \
      setsid "$VENV/bin/uvicorn" stac_fastapi.pgstac.app:create_app --factory --host 127.0.0.1 \
      --port "$API_PORT" --log-level warning --no-access-log \
      >"$UVICORN_LOG" 2>&1 </dev/null &
    echo $! >"$UVICORN_PID"
  )
  pid="$(cat "$UVICORN_PID")"
  for _ in $(seq 300); do
    if api_answers; then return 0; fi
    alive "$pid" || die "uvicorn exited; see $UVICORN_LOG: $(tail -5 "$UVICORN_LOG")"
    sleep 0.1
  done
  die "the STAC API did not answer on $API_URL within 30 s; see $UVICORN_LOG"
}

cmd_start() {
  have_postgres || die "PostgreSQL 15 + PostGIS are not installed; run: $0 install"
  have_venv || die "the server's virtualenv is missing or stale; run: $0 install"
  use_recorded_ports
  if pg_running && uvicorn_pid >/dev/null && api_answers; then
    say "already running at $API_URL"
    echo "$API_URL"
    return 0
  fi
  # A server still running keeps its port; the others take the requested ports.
  local api_port="${LAZYRASTER_STAC_API_PORT:-8766}" pg_port="${LAZYRASTER_PGSTAC_PORT:-5439}"
  if pg_running; then pg_port="$PG_PORT"; fi
  if uvicorn_pid >/dev/null; then api_port="$API_PORT"; fi
  set_ports "$api_port" "$pg_port"
  mkdir -p "$STATE"
  echo "$API_PORT $PG_PORT" >"$PORTS_FILE"
  local t0=$SECONDS
  start_postgres
  migrate
  start_uvicorn
  say "STAC API at $API_URL (PostgreSQL on 127.0.0.1:$PG_PORT), up in $((SECONDS - t0)) s"
  echo "$API_URL"
}

cmd_load() {
  local collections="${1:-}" items="${2:-}"
  [ -n "$collections" ] || die "usage: $0 load COLLECTIONS_JSON_OR_NDJSON [ITEMS_NDJSON]"
  [ -f "$collections" ] || die "no such file: $collections"
  [ -z "$items" ] || [ -f "$items" ] || die "no such file: $items"
  pg_running || die "not running; start it with: $0 start"
  "$VENV/bin/pypgstac" load collections "$collections" --dsn "$DSN" --method upsert ||
    die "pypgstac load collections $collections failed"
  if [ -n "$items" ]; then
    "$VENV/bin/pypgstac" load items "$items" --dsn "$DSN" --method upsert ||
      die "pypgstac load items $items failed"
  fi
}

cmd_delete() {
  [ "$#" -gt 0 ] || die "usage: $0 delete COLLECTION_ID..."
  pg_running || die "not running; start it with: $0 start"
  local id
  for id in "$@"; do
    # Items go with their collection (ON DELETE CASCADE); a missing id is not an error.
    psql_run "$DB" -v id="$id" <<'SQL'
SELECT pgstac.delete_collection(id) FROM pgstac.collections WHERE id = :'id';
SQL
  done
}

cmd_stop() {
  local pid data
  if pid="$(uvicorn_pid)"; then
    kill -TERM "$pid"
    for _ in $(seq 50); do
      alive "$pid" || break
      sleep 0.1
    done
    ! alive "$pid" || kill -KILL "$pid"
    say "stopped uvicorn (pid $pid)"
  fi
  rm -f "$UVICORN_PID"
  if [ -s "$STATE/pg.path" ] && pg_running; then
    data="$(pg_dir)/data"
    as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    say "stopped PostgreSQL ($data)"
  fi
}

cmd_status() {
  if [ -s "$STATE/pg.path" ] && pg_running && uvicorn_pid >/dev/null && api_answers; then
    say "running at $API_URL (PostgreSQL on 127.0.0.1:$PG_PORT)"
    return 0
  fi
  say "not running"
  return 1
}

case "${1:-}" in
  load | delete | stop | status | url) use_recorded_ports ;;
esac
case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  load) shift; cmd_load "$@" ;;
  delete) shift; cmd_delete "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "$API_URL" ;;
  *) die "usage: $0 install|start|load COLLECTIONS [ITEMS]|delete ID...|stop|status|url" ;;
esac
