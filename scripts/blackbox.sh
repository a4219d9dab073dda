#!/usr/bin/env bash
# Black-box check of the demo receiver with the providers' own SDKs
# (tests/blackbox/sdk_check.py), plus its start-up checks on bad
# configuration. Installs the SDKs into a virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/blackbox-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/blackbox/requirements.txt

cargo build --quiet --example receiver
bin=target/debug/examples/receiver

# Start-up: each malformed value stops the receiver with one line naming it.
fails=0
startup() { # startup <VAR> <value>
  local out rc=0
  out=$(env WEBHOOK_ADDR=127.0.0.1:0 "$1=$2" timeout 10 "$bin" 2>&1 >/dev/null | grep -v '^warning: ') || rc=$?
  if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$(printf '%s\n' "$out" | wc -l)" != 1 ] || ! grep -q "$1" <<<"$out"; then
    echo "FAIL start-up with $1=$2: exit $rc, output: $out"; fails=$((fails + 1))
  else
    echo "ok   start-up with $1=$2 refused: $out"
  fi
}
startup WEBHOOK_TOLERANCE_SECS 0
startup WEBHOOK_TOLERANCE_SECS abc
startup WEBHOOK_MAX_BODY_BYTES -1
startup STANDARD_WEBHOOK_SECRET 'whsec_not*base64'
startup STRIPE_WEBHOOK_SECRET ''
startup GITHUB_WEBHOOK_SECRET 'a,,b'
startup SLACK_SIGNING_SECRET '   '
startup WEBHOOK_REDIS_URL 'redis://127.0.0.1:6379'
startup WEBHOOK_ADDR 'not-an-address'

export WEBHOOK_ADDR=127.0.0.1:38418
export WEBHOOK_MAX_BODY_BYTES=4096
export STRIPE_WEBHOOK_SECRET=whsec_blackbox_stripe_one,whsec_blackbox_stripe_two
export GITHUB_WEBHOOK_SECRET=blackbox-github-one,blackbox-github-two
export STANDARD_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_YmxhY2tib3gtc3RhbmRhcmQtdHdv
export SLACK_SIGNING_SECRET=blackbox-slack-one,blackbox-slack-two
export SHOPIFY_WEBHOOK_SECRET=blackbox-shopify-one,blackbox-shopify-two
"$bin" 2>target/blackbox-receiver.log &
receiver=$!
trap 'kill "$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/38418") 2>/dev/null; then break; fi
  sleep 0.1
done

rc=0
"$venv/bin/python" tests/blackbox/sdk_check.py || rc=$?
if grep -E 'whsec_blackbox|blackbox-(github|slack|shopify)-(one|two)' target/blackbox-receiver.log; then
  echo "FAIL a secret appeared in the receiver's log"; rc=1
fi
[ "$fails" = 0 ] || rc=1
exit "$rc"
