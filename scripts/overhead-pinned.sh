#!/usr/bin/env bash
# The audit-overhead measurement with PostgreSQL and Redis on their own core, as in production where they
# run on other machines: a throwaway PostgreSQL and redis-server pinned to CPU 1, the test process (Floodgate's
# services and the load generator) to CPU 0. Needs 2+ cores, root (initdb runs as postgres), PostgreSQL and
# redis-server installed. Usage: scripts/overhead-pinned.sh [go test -run pattern]   (env as in `make overhead`)
set -euo pipefail
run=${1:-TestAuditOverhead}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/floodgate-pinned.XXXX)
chown postgres "$dir"
cleanup() {
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  redis-cli -p 56379 shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
runuser -u postgres -- "$pgbin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
runuser -u postgres -- taskset -c 1 "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w \
  -o "-p 55432 -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p 55432 -U postgres test
taskset -c 1 redis-server --bind 127.0.0.1 --port 56379 --save "" --appendonly no --dir "$dir" \
  --daemonize yes --logfile "$dir/redis.log"
sleep 0.5
cd "$(dirname "$0")/.."
go test -c -o "$dir/floodgate.test" ./cmd/floodgate
FLOODGATE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:55432/test?sslmode=disable" \
FLOODGATE_TEST_REDIS_URL="redis://127.0.0.1:56379/0" FLOODGATE_OVERHEAD=1 \
  taskset -c 0 "$dir/floodgate.test" -test.run "$run" -test.v -test.count=1
