#!/usr/bin/env bash
# Runs "$@" with FLOODGATE_TEST_REDIS_URL pointing at a Redis that answers.
#   1. FLOODGATE_TEST_REDIS_URL if set and answering;
#   2. else 127.0.0.1:6379 if it answers;
#   3. else a throwaway redis-server started here on a free port (stopped on exit).
# With CI set, no Redis is a failure; without it, the tests that need Redis skip loudly.
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
  ping_url "$url" || { echo "with-redis: throwaway redis-server on $port did not answer" >&2; exit 1; }
  echo "with-redis: started a throwaway redis-server at $url" >&2
else
  msg="with-redis: no Redis answers and redis-server is not installed (Debian: apt-get install -y --no-upgrade redis-server redis-tools)"
  if [ -n "${CI:-}" ]; then echo "$msg" >&2; exit 1; fi
  echo "$msg; Redis tests will SKIP" >&2
  url="redis://127.0.0.1:6379/0"
fi
export FLOODGATE_TEST_REDIS_URL="$url"
echo "with-redis: FLOODGATE_TEST_REDIS_URL=$url" >&2
"$@"
