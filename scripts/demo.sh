#!/usr/bin/env bash
# The demo in one command: builds and starts the demo receiver, sends it one
# signed sample delivery per provider plus two that must be refused, prints
# every answer, and stops the receiver. Exits non-zero if any answer is not
# the expected one.
set -euo pipefail
cd "$(dirname "$0")/.."

export WEBHOOK_ADDR="${WEBHOOK_ADDR:-127.0.0.1:3000}"
# The admin listener on its default address (127.0.0.1:9464; the receiver
# goes on without it if that port is taken) with the inspector on.
export WEBHOOK_INSPECT="${WEBHOOK_INSPECT:-1}"
# Diagnostic hints for failed verifications, in the log and the inspector.
export WEBHOOK_HINTS="${WEBHOOK_HINTS:-1}"
# PayPal and Standard Webhooks v1a with the development keys the demo
# sender signs with (public test material: never for real traffic).
export PAYPAL_CERT_FILE="${PAYPAL_CERT_FILE:-tests/data/paypal/leaf.pem}"
export STANDARD_WEBHOOK_PUBLIC_KEYS="${STANDARD_WEBHOOK_PUBLIC_KEYS:-whpk_XlnN9Yboe3obwzpgJ8iPor/XPG5nfegDuID9BfU86Ag=}"
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

for provider in stripe github standard slack shopify discord sendgrid paypal; do
  expect 200 "$provider"
done
expect 200 standard --v1a
expect 200 discord --type 1
expect 401 stripe --tamper
expect 401 paypal --tamper
expect 500 standard --type test.handler_error

echo
echo "== metrics (http://127.0.0.1:9464/metrics; the inspector page is http://127.0.0.1:9464/inspect while the receiver runs)"
if metrics=$(curl -s --max-time 2 http://127.0.0.1:9464/metrics 2>/dev/null); then
  grep '^webhook_guard_requests_total' <<<"$metrics" || echo "(no webhook_guard_requests_total on port 9464)"
else
  echo "(the admin listener is not on 127.0.0.1:9464)"
fi
if [ "${DEMO_STAY:-0}" = 1 ]; then
  echo "DEMO_STAY=1: the receiver keeps running; open http://127.0.0.1:9464/inspect, Ctrl-C to stop"
  wait "$receiver"
fi

echo
if [ "$failed" = 0 ]; then echo "demo: every answer was as expected"; else echo "demo: some answers were not as expected"; fi
exit "$failed"
