#!/usr/bin/env bash
# The demo in one command: builds and starts the demo receiver, sends it one
# signed sample delivery per provider plus two that must be refused, prints
# every answer, and stops the receiver. Exits non-zero if any answer is not
# the expected one.
set -euo pipefail
cd "$(dirname "$0")/.."

export WEBHOOK_ADDR="${WEBHOOK_ADDR:-127.0.0.1:3000}"
cargo build --quiet --example receiver --example send
bin=target/debug/examples

"$bin/receiver" &
receiver=$!
trap 'kill "$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true' EXIT

# Wait for the port to open (up to 10 s).
host=${WEBHOOK_ADDR%:*}
port=${WEBHOOK_ADDR##*:}
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then break; fi
  kill -0 "$receiver" 2>/dev/null || { echo "the receiver exited" >&2; exit 1; }
  sleep 0.1
done

failed=0
expect() { # expect <status> <send args...>
  local want=$1 out; shift
  echo
  echo "== send $* (expect HTTP $want)"
  out=$("$bin/send" "$@" 2>&1) || true
  echo "$out"
  if ! grep -q "^HTTP $want " <<<"$out"; then echo "!! expected HTTP $want"; failed=1; fi
}

for provider in stripe github standard slack shopify; do
  expect 200 "$provider"
done
expect 401 stripe --tamper
expect 500 standard --type test.handler_error

echo
if [ "$failed" = 0 ]; then echo "demo: every answer was as expected"; else echo "demo: some answers were not as expected"; fi
exit "$failed"
