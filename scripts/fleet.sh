#!/usr/bin/env bash
# Fleet checks of the demo receiver: several receivers on one Redis, run as real processes.
#   tests/fleet/tls_check.py            rediss:// with WEBHOOK_REDIS_CA_FILE: a verified server is used
#                                       (also with an ACL user), an unverified one refused at start
#                                       (or answered 503 while Redis was unreachable at start); no
#                                       password is ever printed; warnings for appendonly no and an
#                                       evicting maxmemory-policy
#   tests/fleet/quota_check.py          three replicas share each client's rate limit (the first 429
#                                       at request ~31 with a burst of 30, not ~91) and its
#                                       failed-authentication lockout
#   tests/fleet/takeover_check.py       WEBHOOK_ACK=queue on three replicas, one SIGKILLed while it runs
#                                       slow handlers: its deliveries are taken over after the lease,
#                                       nothing accepted is lost, repeats are duplicates everywhere
#   tests/fleet/redis_restart_check.py  Redis SIGKILLed and restarted under traffic: 503 (or 429 with
#                                       WEBHOOK_RATE_REDIS_FALLBACK=deny) meanwhile, service resumes
#                                       by itself, nothing acknowledged is lost
# Signs with the providers' SDKs through tests/blackbox/bbkit.py and starts receivers through
# tests/durability/dkit.py, in the same virtualenv as scripts/blackbox.sh. Uses $RECEIVER_BIN when
# set, else builds `cargo build --release --example receiver --features redis`. Needs redis-server
# (with TLS) and openssl; installs them with apt-get when missing and run as root. Each check starts
# its own redis-server(s) on loopback ports below 32768, in its own temp dir. SMOKE=1 shortens the
# queue checks. About a minute either way. Every process started here is stopped on exit; any
# failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    return 0
  fi
  echo "error: the fleet checks need ${missing[*]} on PATH (e.g. apt-get install ${missing[*]})" >&2
  exit 1
}
need
# Installing the package may start a system service; these checks never use it.

. scripts/lib/venv.sh
export PYTHONPATH="$PWD/tests/blackbox:$PWD/tests/durability:$PWD/tests/fleet${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "${RECEIVER_BIN:-}" ]; then
  cargo build --quiet --release --example receiver --features redis
  RECEIVER_BIN=target/release/examples/receiver
fi
RECEIVER_BIN=$(cd "$(dirname "$RECEIVER_BIN")" && pwd)/$(basename "$RECEIVER_BIN")
export RECEIVER_BIN
export SMOKE="${SMOKE:-0}"

# The secrets bbkit signs with; the checks pass them on to the receivers they start.
export STRIPE_WEBHOOK_SECRET=whsec_fleet_stripe_one
export GITHUB_WEBHOOK_SECRET=fleet-github-one
export STANDARD_WEBHOOK_SECRET=whsec_ZmxlZXQtc3RhbmRhcmQtb25l
export SLACK_SIGNING_SECRET=fleet-slack-one
export SHOPIFY_WEBHOOK_SECRET=fleet-shopify-one
export META_APP_SECRET=fleet-meta-one
export META_VERIFY_TOKEN=fleet-meta-verify-token
export X_CONSUMER_SECRET=fleet-x-one

child=""
cleanup() {
  # Each check stops the receivers and redis-servers it started when it exits (also on SIGTERM).
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
total=$SECONDS
for check in tls_check quota_check takeover_check redis_restart_check; do
  echo "--- $check$label"
  started=$SECONDS
  "$py" "tests/fleet/$check.py" &
  child=$!
  rc=0
  wait "$child" || rc=$?
  child=""
  echo "    ($check: $((SECONDS - started)) s)"
  [ "$rc" = 0 ] || failures+=("$check")
done

if [ "${#failures[@]}" != 0 ]; then
  echo "fleet: FAILED: ${failures[*]} ($((SECONDS - total)) s)"
  exit 1
fi
echo "fleet: all checks passed ($((SECONDS - total)) s)"
