#!/usr/bin/env bash
# Runs every test: `cargo test --all-features`, with a throwaway redis-server
# on a free loopback port for the Redis dedupe store's tests.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh --lib      # extra arguments go to cargo test
#
# Set WEBHOOK_GUARD_REDIS_URL to use a Redis you already run instead. The
# tests that kill and restart Redis always start their own redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

need_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (apt-get)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    return 0
  fi
  echo "error: the Redis tests need redis-server on PATH (e.g. apt-get install redis-server)" >&2
  exit 1
}

need_redis_server
# Installing the package may start a system service; these tests never use it.

if [ -z "${WEBHOOK_GUARD_REDIS_URL:-}" ]; then
  dir=$(mktemp -d)
  pid=""
  cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
  }
  trap cleanup EXIT
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$dir" --logfile "$dir/redis.log" &
    pid=$!
    for _ in $(seq 1 50); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    wait "$pid" 2>/dev/null || true
    pid=""
  done
  if [ -z "$pid" ]; then
    echo "error: could not start redis-server on a loopback port" >&2
    cat "$dir/redis.log" >&2 || true
    exit 1
  fi
  export WEBHOOK_GUARD_REDIS_URL="redis://127.0.0.1:$port/"
  echo "redis-server for the tests: $WEBHOOK_GUARD_REDIS_URL (pid $pid)" >&2
fi

cargo test --all-features "$@"
