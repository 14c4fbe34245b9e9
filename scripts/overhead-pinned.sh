#!/usr/bin/env bash
# The audit-overhead measurement with Floodgate on a core of its own, as in production where the callers
# (Envoys), PostgreSQL and Redis run on other machines: the test process (Floodgate's services) is pinned
# to CPU 0; a throwaway PostgreSQL, a redis-server and the load generator's client process to CPU 1.
# Needs 2+ cores, root (initdb runs as postgres), PostgreSQL and redis-server installed.
# Usage: scripts/overhead-pinned.sh [go test -run pattern]   (env as in `make overhead`, and:)
#   STORE_CPUS=0        put PostgreSQL and Redis on Floodgate's core instead
#   STORE_NICE=19       deprioritise them (autogroup nice 19 and SCHED_IDLE)
#   PG_BACKGROUND=20    keep PostgreSQL busy with 20 transactions/s of scripts/overhead-pgload.sql
#                       (1,000 audit-like rows each) during the whole run, audit on or off
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench_pid=
run=${1:-TestAuditOverhead}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d "${STORE_TMP:-/tmp}/floodgate-pinned.XXXX")
chown postgres "$dir"
cleanup() {
  [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null || true
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  redis-cli -p 56379 shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
runuser -u postgres -- "$pgbin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
runuser -u postgres -- taskset -c "${STORE_CPUS:-1}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w \
  -o "-p 55432 -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p 55432 -U postgres test
taskset -c "${STORE_CPUS:-1}" redis-server --bind 127.0.0.1 --port 56379 --save "" --appendonly no --dir "$dir" \
  --daemonize yes --logfile "$dir/redis.log"
sleep 0.5
if [ -n "${STORE_NICE:-}" ]; then
  for pid in $(head -1 "$dir/data/postmaster.pid") $(redis-cli -p 56379 info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p'); do
    echo "$STORE_NICE" > "/proc/$pid/autogroup"; cat "/proc/$pid/autogroup"
    for tid in /proc/$pid/task/*; do chrt -i -p 0 "${tid##*/}" >/dev/null; done
  done
fi
if [ -n "${PG_BACKGROUND:-}" ]; then
  psql -q -h 127.0.0.1 -p 55432 -U postgres test -c "CREATE TABLE pgload (id text PRIMARY KEY, time timestamptz, client_ip text, entries jsonb, rule text); CREATE INDEX ON pgload (client_ip, id)"
  taskset -c "${STORE_CPUS:-1}" "$pgbin/pgbench" -n -h 127.0.0.1 -p 55432 -U postgres -R "$PG_BACKGROUND" -T 600 -f "$root/scripts/overhead-pgload.sql" test >"$dir/pgbench.log" 2>&1 &
  bench_pid=$!
fi
cd "$root"
go test -c -o "$dir/floodgate.test" ./cmd/floodgate
FLOODGATE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:55432/test?sslmode=disable" \
FLOODGATE_TEST_REDIS_URL="redis://127.0.0.1:56379/0" FLOODGATE_OVERHEAD=1 FLOODGATE_OVERHEAD_CLIENT_CPUS=1 \
  taskset -c 0 "$dir/floodgate.test" -test.run "$run" -test.v -test.count=1
