#!/usr/bin/env bash
# nginx on loopback serving a directory read-only, with HTTP range requests, for the tests.
#
#   scripts/services/nginx.sh install              # apt-get install nginx, only if missing
#   scripts/services/nginx.sh start ROOT [PORT]    # serve ROOT on http://127.0.0.1:PORT/
#   scripts/services/nginx.sh status               # exit 0 when our nginx is running
#   scripts/services/nginx.sh stop                 # stop the nginx that `start` started
#   scripts/services/nginx.sh url                  # print the base URL of the running server
#
# nginx runs from a configuration of our own (never /etc/nginx): `nginx -p STATE -c
# STATE/nginx.conf`, daemonised, with its pid file, access log and error log in the state
# directory (.services/nginx/ under the repository, which git ignores). The access log has
# one JSON object per request: time, method, uri, request line, status, bytes sent, and
# the Range request header ("" when absent), so tests can tell which bytes were fetched.
# Only GET and HEAD are allowed. `stop` only signals the process named in our pid file.
#
# Environment: LAZYRASTER_NGINX_PORT (default 8765), LAZYRASTER_NGINX_STATE (state
# directory, default .services/nginx).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${LAZYRASTER_NGINX_STATE:-$REPO/.services/nginx}"
DEFAULT_PORT="${LAZYRASTER_NGINX_PORT:-8765}"
CONF="$STATE/nginx.conf"
PIDFILE="$STATE/nginx.pid"
ACCESS_LOG="$STATE/access.log"
ERROR_LOG="$STATE/error.log"

say() { printf 'nginx.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

alive() {  # alive PID: the process exists and is not a zombie awaiting its reaper
  local state
  state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

nginx_bin() {
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

cmd_install() {
  if [ -n "$(nginx_bin)" ]; then
    say "nginx is installed already: $("$(nginx_bin)" -v 2>&1)"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "install needs root (apt-get install nginx)"
  # Keep the package's maintainer scripts from starting the system nginx on port 80: we
  # run ours from the state directory. The policy file is removed again if we created it.
  local policy=/usr/sbin/policy-rc.d created_policy=0 status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq &&
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends nginx \
      >/dev/null; } || status=$?
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
  [ "$status" = 0 ] || die "apt-get install nginx failed ($status)"
  [ -n "$(nginx_bin)" ] || die "the nginx package is installed but no nginx binary was found"
  say "installed: $("$(nginx_bin)" -v 2>&1)"
}

running_pid() {  # print the pid of our nginx master and succeed, or fail
  [ -s "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  alive "$pid" || return 1
  grep -q nginx "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

write_config() {  # write_config ROOT PORT
  local root="$1" port="$2" user_line=""
  if [ "$(id -u)" = 0 ]; then user_line="user $(id -un);"; fi
  mkdir -p "$STATE/tmp"
  # When the master runs as root, the workers run as the same user rather than `nobody`,
  # so that they can read a test's temporary directory (pytest makes it 0700).
  cat >"$CONF" <<CONF
# Written by scripts/services/nginx.sh start: serves $root read-only on 127.0.0.1:$port.
# lazyraster-root: $root
# lazyraster-port: $port
daemon on;
$user_line
worker_processes 1;
pid $PIDFILE;
error_log $ERROR_LOG warn;

events {
    worker_connections 256;
}

http {
    types {
        application/json                          json;
        application/geo+json                      geojson;
        image/tiff                                tif tiff;
        image/jp2                                 jp2;
        application/x-netcdf                      nc nc4;
        application/x-hdf5                        h5 hdf5;
        application/xml                           xml;
        text/html                                 html htm;
        text/plain                                txt md;
        text/csv                                  csv;
        image/png                                 png;
        image/jpeg                                jpg jpeg;
    }
    default_type application/octet-stream;
    charset_types application/json application/geo+json text/plain text/csv;

    log_format lazyraster escape=json
        '{"time":"\$time_iso8601","method":"\$request_method","uri":"\$uri",'
        '"request":"\$request","status":\$status,"bytes":\$body_bytes_sent,'
        '"range":"\$http_range"}';
    access_log $ACCESS_LOG lazyraster;

    client_body_temp_path $STATE/tmp/body;
    proxy_temp_path $STATE/tmp/proxy;
    fastcgi_temp_path $STATE/tmp/fastcgi;
    uwsgi_temp_path $STATE/tmp/uwsgi;
    scgi_temp_path $STATE/tmp/scgi;

    sendfile on;
    keepalive_timeout 30;
    server_tokens off;

    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        root $root;
        autoindex off;
        log_not_found off;
        location / {
            limit_except GET {
                deny all;
            }
        }
    }
}
CONF
}

conf_value() {  # conf_value KEY: read a value recorded in the config header
  sed -n "s/^# lazyraster-$1: //p" "$CONF" 2>/dev/null | head -1
}

cmd_start() {
  local root="${1:-}" port="${2:-$DEFAULT_PORT}" nginx pid
  [ -n "$root" ] || die "usage: $0 start ROOT [PORT]"
  [ -d "$root" ] || die "ROOT '$root' is not a directory"
  root="$(cd "$root" && pwd -P)"
  case "$port" in '' | *[!0-9]*) die "PORT must be a number, got '$port'" ;; esac
  nginx="$(nginx_bin)"
  [ -n "$nginx" ] || die "nginx is not installed; run: $0 install"
  if pid="$(running_pid)"; then
    if [ "$(conf_value root)" = "$root" ] && [ "$(conf_value port)" = "$port" ]; then
      say "already serving $root on http://127.0.0.1:$port/ (pid $pid)"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    say "running with another root or port; restarting"
    cmd_stop
  fi
  mkdir -p "$STATE"
  write_config "$root" "$port"
  : >>"$ACCESS_LOG"
  "$nginx" -t -q -p "$STATE" -c "$CONF" -e "$ERROR_LOG" ||
    die "nginx rejected $CONF; see the messages above"
  "$nginx" -p "$STATE" -c "$CONF" -e "$ERROR_LOG" ||
    die "nginx did not start (is port $port in use?); see $ERROR_LOG"
  for _ in $(seq 50); do
    if running_pid >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$port/.lazyraster-ready"; then
      say "serving $root on http://127.0.0.1:$port/ (access log $ACCESS_LOG)"
      echo "http://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  die "nginx did not answer on 127.0.0.1:$port; see $ERROR_LOG"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    say "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"  # fast shutdown: a test server has nothing worth draining
  for _ in $(seq 100); do
    alive "$pid" || break
    sleep 0.05
  done
  ! alive "$pid" || die "nginx (pid $pid) did not stop; see $ERROR_LOG"
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    say "running (pid $pid), serving $(conf_value root) on http://127.0.0.1:$(conf_value port)/"
    return 0
  fi
  say "not running"
  return 1
}

cmd_url() {
  running_pid >/dev/null || die "not running; start it with: $0 start ROOT [PORT]"
  echo "http://127.0.0.1:$(conf_value port)"
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) cmd_url ;;
  *) die "usage: $0 install|start ROOT [PORT]|stop|status|url" ;;
esac
