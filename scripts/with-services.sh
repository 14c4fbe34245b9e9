#!/usr/bin/env bash
# Runs "$@" with FLOODGATE_TEST_REDIS_URL and FLOODGATE_TEST_DATABASE_URL pointing at a Redis and a
# PostgreSQL that answer:
#   1. the variable if set and answering;
#   2. else the local default (Redis 127.0.0.1:6379, PostgreSQL 127.0.0.1:5432 database test) if it answers;
#   3. else a throwaway server started here from the installed binaries on a free port (stopped on exit).
# With CI set, a missing service is a failure; without it, the tests that need it skip loudly.
set -euo pipefail

ping_url() { # url
  command -v redis-cli >/dev/null 2>&1 || return 1
  [ "$(timeout 3 redis-cli -u "$1" ping 2>/dev/null)" = "PONG" ]
}

url="${FLOODGATE_TEST_REDIS_URL:-}"
if [ -n "$url" ] && ping_url "$url"; then
  :
elif ping_url "redis://127.0.0.1:6379/0"; then
  url="redis://127.0.0.1:6379/0"
elif command -v redis-server >/dev/null 2>&1; then
  dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 6390)
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  trap 'kill "$(cat "$dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"' EXIT
  url="redis://127.0.0.1:$port/0"
  for _ in $(seq 50); do ping_url "$url" && break; sleep 0.1; done
  ping_url "$url" || { echo "with-services: throwaway redis-server on $port did not answer" >&2; exit 1; }
  echo "with-services: started a throwaway redis-server at $url" >&2
else
  msg="with-services: no Redis answers and redis-server is not installed (Debian: apt-get install -y --no-upgrade redis-server redis-tools)"
  if [ -n "${CI:-}" ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg; Redis tests will SKIP" >&2
  url="redis://127.0.0.1:6379/0"
fi
export FLOODGATE_TEST_REDIS_URL="$url"
echo "with-services: FLOODGATE_TEST_REDIS_URL=$url" >&2

# PostgreSQL (the audit history).
pg_ok() { command -v psql >/dev/null 2>&1 && timeout 5 psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }
pgurl="${FLOODGATE_TEST_DATABASE_URL:-}"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$pgurl" ] && pg_ok "$pgurl"; then
  :
elif pg_ok "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"; then
  pgurl="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
elif [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] && id postgres >/dev/null 2>&1; then
  pgdir=$(mktemp -d /tmp/floodgate-pg.XXXXXX)
  chown postgres "$pgdir"
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
  runuser -u postgres -- "$pgbin/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  prev_trap=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT$/\1/")
  trap "runuser -u postgres -- '$pgbin/pg_ctl' -D '$pgdir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$pgdir'; $prev_trap" EXIT
  runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" test
  pgurl="postgres://postgres@127.0.0.1:$pgport/test?sslmode=disable"
  echo "with-services: started a throwaway PostgreSQL at $pgurl" >&2
else
  msg="with-services: no PostgreSQL answers and none can be started (Debian: apt-get install -y --no-upgrade postgresql)"
  if [ -n "${CI:-}" ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg; PostgreSQL tests will SKIP" >&2
  pgurl="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
fi
export FLOODGATE_TEST_DATABASE_URL="$pgurl"
echo "with-services: FLOODGATE_TEST_DATABASE_URL=$pgurl" >&2
"$@"
