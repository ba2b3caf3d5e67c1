#!/usr/bin/env bash
# Runs a command with a private redis-server on a free loopback port (never 6379), exported as
# SMARTCACHE_TEST_REDIS_URL, and stops that server by pid afterwards, whatever the outcome.
set -euo pipefail
dir=$(mktemp -d /tmp/smartcache-redis.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir" --pidfile "$dir/redis.pid" --daemonize yes --logfile "$dir/redis.log" >/dev/null
cleanup() {
  local pid
  pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    # The server writes into $dir while it shuts down: wait for it to be gone before removing
    # the directory, and never let the clean-up change the command's own exit status.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -rf "$dir" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
export SMARTCACHE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
"$@"
