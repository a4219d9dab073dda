#!/usr/bin/env bash
# Durability checks of the demo receiver, run as real processes:
#   tests/durability/restart_check.py   dedupe keys in WEBHOOK_STATE_DIR survive SIGTERM and SIGKILL;
#                                       an unusable state dir stops it at start
#   tests/durability/shutdown_check.py  SIGTERM during a running handler: /readyz 503 shutting_down,
#                                       the request completes, exit 0, its claim completed
#   tests/durability/slow_clients.py    300 stalled bodies and half-sent heads: memory bounded,
#                                       connections closed on their deadlines, real deliveries served
#   tests/durability/crash_check.py     WEBHOOK_ACK=queue under repeated SIGKILL: nothing accepted is
#                                       lost, nothing refused runs, repeats are duplicates
# Signs with the providers' SDKs through tests/blackbox/bbkit.py, in the same virtualenv as
# scripts/blackbox.sh. Uses $RECEIVER_BIN when set, else builds
# `cargo build --release --example receiver --features sqlite`. SMOKE=1 shortens the slow-client
# timeouts and the crash run. Receivers listen on free loopback ports (the slow-client check also
# uses source addresses in 127.1-3.x.y). Every process started here is stopped on exit; any failure
# exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/venv.sh
export PYTHONPATH="$PWD/tests/blackbox${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "${RECEIVER_BIN:-}" ]; then
  cargo build --quiet --release --example receiver --features sqlite
  RECEIVER_BIN=target/release/examples/receiver
fi
RECEIVER_BIN=$(cd "$(dirname "$RECEIVER_BIN")" && pwd)/$(basename "$RECEIVER_BIN")
export RECEIVER_BIN
export SMOKE="${SMOKE:-0}"

# The secrets bbkit signs with; the checks pass them on to the receivers they start.
export STRIPE_WEBHOOK_SECRET=whsec_durability_stripe_one
export GITHUB_WEBHOOK_SECRET=durability-github-one
export STANDARD_WEBHOOK_SECRET=whsec_ZHVyYWJpbGl0eS1zdGFuZGFyZC1vbmU=
export SLACK_SIGNING_SECRET=durability-slack-one
export SHOPIFY_WEBHOOK_SECRET=durability-shopify-one
export META_APP_SECRET=durability-meta-one
export META_VERIFY_TOKEN=durability-meta-verify-token
export X_CONSUMER_SECRET=durability-x-one

child=""
cleanup() {
  # Each check stops the receivers it started when it exits (also on SIGTERM).
  if [ -n "$child" ] && kill "$child" 2>/dev/null; then
    for _ in $(seq 150); do
      kill -0 "$child" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap "exit 130" INT TERM

label=""
[ "$SMOKE" = 1 ] && label=" (SMOKE)"
failures=()
for check in restart_check shutdown_check slow_clients crash_check; do
  echo "--- $check$label"
  started=$SECONDS
  "$py" "tests/durability/$check.py" &
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  echo "    ($check: $((SECONDS - started)) s)"
  [ "$rc" = 0 ] || failures+=("$check")
done

if [ "${#failures[@]}" != 0 ]; then
  echo "durability: FAILED: ${failures[*]}"
  exit 1
fi
echo "durability: all checks passed"
