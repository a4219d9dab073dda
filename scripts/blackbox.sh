#!/usr/bin/env bash
# Black-box check of the demo receiver with the providers' own SDKs
# (tests/blackbox/sdk_check.py: every route, replays, retries, 409), its
# payload rules and Meta / X routes (tests/blackbox/payload_check.py: JSON
# Schema 422s, 400 invalid_json / duplicate_keys, handshakes), its
# abuse protections (tests/blackbox/abuse_check.py: rate limits, trusted
# proxies, the failed-authentication quota, and two receivers sharing one
# Redis that is killed and restarted), its admin listener
# (tests/blackbox/admin_check.py: /metrics after signed and tampered
# deliveries, health routes, 404s, no rate limit; `off`, a busy default
# port, a busy explicit port), and its start-up checks on bad
# configuration. Installs the SDKs into a virtualenv under target/, and
# redis-server (apt-get) when it is missing.
#
# Loopback ports used: 28418 (main receiver), 28419 (rate-limited),
# 28420 (behind a trusted proxy), 28421 and 28422 (two receivers sharing a
# Redis), the first free port of 28423-28429 for redis-server, 28430 and
# 28431 (a receiver and its admin listener), 28432 (a receiver answering
# Dropbox's challenge; all below Linux's ephemeral range, 32768-60999, so no
# outgoing connection can hold one), free ports the kernel picks,
# and 127.0.0.1:9464 (the default admin port, held by admin_check.py to
# show that a busy default is only a warning). Every other receiver runs
# with WEBHOOK_ADMIN_ADDR=off, so none depends on the default admin port.
# Every process started here is stopped on exit; any failure exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/venv.sh

out=target/blackbox
mkdir -p "$out"
rm -f "$out"/*.log "$out"/*.out "$out"/*.json

cargo build --quiet --example receiver
# Kept aside: the Redis build below overwrites target/debug/examples/receiver.
cp target/debug/examples/receiver "$out/receiver"
bin=$out/receiver

pids=()
redis_pid=""
cleanup() {
  local p
  for p in ${pids[@]+"${pids[@]}"} $redis_pid; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[@]+"${pids[@]}"} $redis_pid; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap "exit 130" INT TERM

failures=()
fail() { failures+=("$*"); }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start-up: each malformed value stops the receiver with one line naming it.
startup() { # startup <VAR> <value>   (with the binary in $bin)
  local out rc=0
  out=$(env WEBHOOK_ADDR=127.0.0.1:0 WEBHOOK_ADMIN_ADDR=off "$1=$2" timeout 10 "$bin" 2>&1 >/dev/null | grep -v '^warning: ') || rc=$?
  if [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$(printf '%s\n' "$out" | wc -l)" != 1 ] || ! grep -q "$1" <<<"$out"; then
    echo "FAIL start-up with $1=$2: exit $rc, output: $out"; fail "start-up $1=$2"
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
startup META_APP_SECRET ''
startup X_CONSUMER_SECRET 'x-one,'
startup META_VERIFY_TOKEN ''
startup WEBHOOK_REDIS_URL 'redis://127.0.0.1:6379'
startup WEBHOOK_ADDR 'not-an-address'
startup WEBHOOK_TRUSTED_PROXIES '10.0.0.0/33'
startup WEBHOOK_TRUSTED_PROXIES 'nonsense'
startup WEBHOOK_RATE_PER_SEC 0
startup WEBHOOK_RATE_BURST abc
startup WEBHOOK_ADMIN_ADDR 0.0.0.0:28431
startup WEBHOOK_ADMIN_ADDR '[::]:28431'
startup WEBHOOK_ADMIN_ADDR nonsense
startup WEBHOOK_ADMIN_PUBLIC yes
startup DROPBOX_CHALLENGE yes
startup WEBHOOK_PUBLIC_URL 'ftp://hooks.example.com'
startup ADYEN_WEBHOOK_SECRET 'not-hex'
startup ZENDESK_WEBHOOK_SECRET 'dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=='

start_receiver() { # start_receiver <name> <binary> <port> [VAR=value ...]; log in $out/<name>.log
  # The admin listener is off unless the caller sets WEBHOOK_ADMIN_ADDR.
  local name=$1 exe=$2 port=$3 pid
  shift 3
  if port_open "$port"; then
    echo "FAIL receiver $name: 127.0.0.1:$port is already in use"; fail "receiver $name: port busy"
    return 1
  fi
  env WEBHOOK_ADDR="127.0.0.1:$port" WEBHOOK_ADMIN_ADDR=off "$@" "$exe" >"$out/$name.out" 2>"$out/$name.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    if port_open "$port"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL receiver $name did not start on 127.0.0.1:$port: $(tail -n 3 "$out/$name.log")"
  fail "receiver $name did not start"
  return 1
}

run_py() { # run_py <label> <script> [args...]
  local label=$1
  shift
  echo "--- $label"
  "$py" "$@" || fail "$label"
}

export WEBHOOK_MAX_BODY_BYTES=4096
export STRIPE_WEBHOOK_SECRET=whsec_blackbox_stripe_one,whsec_blackbox_stripe_two
export GITHUB_WEBHOOK_SECRET=blackbox-github-one,blackbox-github-two
export STANDARD_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_YmxhY2tib3gtc3RhbmRhcmQtdHdv
export SLACK_SIGNING_SECRET=blackbox-slack-one,blackbox-slack-two
export SHOPIFY_WEBHOOK_SECRET=blackbox-shopify-one,blackbox-shopify-two
export META_APP_SECRET=blackbox-meta-one,blackbox-meta-two
export META_VERIFY_TOKEN=blackbox-meta-verify-token
export X_CONSUMER_SECRET=blackbox-x-one,blackbox-x-two
export WEBHOOK_PUBLIC_URL=https://hooks.example.com
export ADYEN_WEBHOOK_SECRET=626c61636b626f782d6e616d65642d616479656e2d6f6e652d33326279746573,626c61636b626f782d6e616d65642d616479656e2d74776f2d33326279746573
export ANTHROPIC_WEBHOOK_SECRET=whsec_YmxhY2tib3gtbmFtZWQtYW50aHJvcGljLW9uZS1rZXk=,whsec_YmxhY2tib3gtbmFtZWQtYW50aHJvcGljLXR3by1rZXk=
export BITBUCKET_WEBHOOK_SECRET=blackbox-named-bitbucket-one,blackbox-named-bitbucket-two
export BREX_WEBHOOK_SECRET=YmxhY2tib3gtbmFtZWQtYnJleC1vbmUta2V5,YmxhY2tib3gtbmFtZWQtYnJleC10d28ta2V5
export CALENDLY_WEBHOOK_SECRET=blackbox-named-calendly-one,blackbox-named-calendly-two
export CLERK_WEBHOOK_SECRET=whsec_YmxhY2tib3gtbmFtZWQtY2xlcmstb25lLWtleQ==,whsec_YmxhY2tib3gtbmFtZWQtY2xlcmstdHdvLWtleQ==
export COINBASE_WEBHOOK_SECRET=blackbox-named-coinbase-one,blackbox-named-coinbase-two
export DROPBOX_WEBHOOK_SECRET=blackbox-named-dropbox-one,blackbox-named-dropbox-two
export GITLAB_WEBHOOK_SECRET=blackbox-named-gitlab-one,blackbox-named-gitlab-two
export HUBSPOT_WEBHOOK_SECRET=blackbox-named-hubspot-one,blackbox-named-hubspot-two
export INTERCOM_WEBHOOK_SECRET=blackbox-named-intercom-one,blackbox-named-intercom-two
export LEMONSQUEEZY_WEBHOOK_SECRET=blackbox-named-lemonsqueezy-one,blackbox-named-lemonsqueezy-two
export LINEAR_WEBHOOK_SECRET=blackbox-named-linear-one,blackbox-named-linear-two
export MAILGUN_WEBHOOK_SECRET=blackbox-named-mailgun-one,blackbox-named-mailgun-two
export MUX_WEBHOOK_SECRET=blackbox-named-mux-one,blackbox-named-mux-two
export OPENAI_WEBHOOK_SECRET=whsec_YmxhY2tib3gtbmFtZWQtb3BlbmFpLW9uZS1rZXk=,whsec_YmxhY2tib3gtbmFtZWQtb3BlbmFpLXR3by1rZXk=
export PADDLE_WEBHOOK_SECRET=pdl_ntfset_blackbox-named-paddle-one,pdl_ntfset_blackbox-named-paddle-two
export RAZORPAY_WEBHOOK_SECRET=blackbox-named-razorpay-one,blackbox-named-razorpay-two
export REPLICATE_WEBHOOK_SECRET=whsec_YmxhY2tib3gtbmFtZWQtcmVwbGljYXRlLW9uZS1rZXk=,whsec_YmxhY2tib3gtbmFtZWQtcmVwbGljYXRlLXR3by1rZXk=
export RESEND_WEBHOOK_SECRET=whsec_YmxhY2tib3gtbmFtZWQtcmVzZW5kLW9uZS1rZXk=,whsec_YmxhY2tib3gtbmFtZWQtcmVzZW5kLXR3by1rZXk=
export SENTRY_WEBHOOK_SECRET=blackbox-named-sentry-one,blackbox-named-sentry-two
export SQUARE_WEBHOOK_SECRET=blackbox-named-square-one,blackbox-named-square-two
export TWILIO_WEBHOOK_SECRET=blackbox-named-twilio-one,blackbox-named-twilio-two
export TWITCH_WEBHOOK_SECRET=blackbox-named-twitch-one,blackbox-named-twitch-two
export TYPEFORM_WEBHOOK_SECRET=blackbox-named-typeform-one,blackbox-named-typeform-two
export VERCEL_WEBHOOK_SECRET=blackbox-named-vercel-one,blackbox-named-vercel-two
export WORKOS_WEBHOOK_SECRET=blackbox-named-workos-one,blackbox-named-workos-two
export ZENDESK_WEBHOOK_SECRET=blackbox-named-zendesk-one,blackbox-named-zendesk-two
export ZOOM_WEBHOOK_SECRET=blackbox-named-zoom-one,blackbox-named-zoom-two

main=127.0.0.1:28418
if start_receiver main "$bin" 28418; then
  WEBHOOK_ADDR=$main run_py "sdk_check (every route, dedupe)" tests/blackbox/sdk_check.py
  WEBHOOK_ADDR=$main run_py "payload_check (schemas, 400/422, Meta and X, handshakes)" tests/blackbox/payload_check.py
  WEBHOOK_ADDR=$main run_py "providers_check (named providers, their SDKs)" tests/blackbox/providers_check.py
  run_py "failed-authentication quota (main receiver)" tests/blackbox/abuse_check.py failedauth "$main"
fi
if start_receiver ratelimited "$bin" 28419 WEBHOOK_RATE_PER_SEC=1 WEBHOOK_RATE_BURST=3; then
  run_py "rate limit (1/s, burst 3, no trusted proxies)" tests/blackbox/abuse_check.py ratelimit 127.0.0.1:28419
fi
if start_receiver proxied "$bin" 28420 WEBHOOK_RATE_PER_SEC=1 WEBHOOK_RATE_BURST=2 WEBHOOK_TRUSTED_PROXIES=127.0.0.1/32; then
  run_py "trusted proxy 127.0.0.1/32 (1/s, burst 2)" tests/blackbox/abuse_check.py proxies 127.0.0.1:28420
fi
if start_receiver admin "$bin" 28430 WEBHOOK_ADMIN_ADDR=127.0.0.1:28431 WEBHOOK_RATE_PER_SEC=1 WEBHOOK_RATE_BURST=2; then
  run_py "admin listener 127.0.0.1:28431 (metrics, health, 404s, no rate limit)" \
    tests/blackbox/admin_check.py serve 127.0.0.1:28430 127.0.0.1:28431
fi
run_py "admin listener start-up (off, busy default port, busy explicit port)" tests/blackbox/admin_check.py startup "$bin"

# Dropbox's unauthenticated challenge, answered only with DROPBOX_CHALLENGE=1.
if start_receiver dropbox "$bin" 28432 DROPBOX_CHALLENGE=1; then
  echo "--- dropbox challenge (DROPBOX_CHALLENGE=1)"
  reply=$(curl -s -i "http://127.0.0.1:28432/webhooks/dropbox?challenge=Ab9-_.~z" | tr -d '\r')
  if grep -q '^HTTP/1.1 200' <<<"$reply" && grep -qi '^x-content-type-options: nosniff' <<<"$reply" &&
    grep -qi '^content-type: text/plain' <<<"$reply" && [ "$(tail -n 1 <<<"$reply")" = "Ab9-_.~z" ]; then
    echo "ok   dropbox: challenge echoed as text/plain with nosniff"
  else
    echo "FAIL dropbox: challenge not echoed: $reply"; fail "dropbox challenge"
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:28432/webhooks/dropbox?challenge=%3Cscript%3E")
  if [ "$status" = 400 ]; then
    echo "ok   dropbox: a challenge with markup is refused (400)"
  else
    echo "FAIL dropbox: a challenge with markup got $status"; fail "dropbox challenge markup"
  fi
fi

# --- Redis: two receivers sharing one redis-server that is killed and restarted -------------------
echo "--- redis"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (apt-get)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis_port=""
for p in 28423 28424 28425 28426 28427 28428 28429; do
  if ! port_open "$p"; then redis_port=$p; break; fi
done
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$PWD/$out" --logfile "$PWD/$out/redis-server.txt" &
  redis_pid=$!
  for _ in $(seq 50); do
    if port_open "$redis_port"; then return 0; fi
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL redis-server did not start on 127.0.0.1:$redis_port"; fail "redis-server did not start"
  return 1
}
stop_redis() {
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
}

if [ -z "$redis_port" ]; then
  echo "FAIL no free port for redis-server in 28423-28429"; fail "no port for redis-server"
elif ! cargo build --quiet --example receiver --features redis; then
  echo "FAIL cargo build --example receiver --features redis"; fail "redis build"
else
  cp target/debug/examples/receiver "$out/receiver-redis"
  bin=$out/receiver-redis
  startup WEBHOOK_REDIS_URL 'not-a-url'
  startup WEBHOOK_REDIS_URL 'http://127.0.0.1:6379'
  url="redis://127.0.0.1:$redis_port/"
  state=$out/redis-delivery.json
  logs=("$out/redis-a.log" "$out/redis-b.log")
  if start_redis &&
    start_receiver redis-a "$bin" 28421 WEBHOOK_REDIS_URL="$url" &&
    start_receiver redis-b "$bin" 28422 WEBHOOK_REDIS_URL="$url"; then
    run_py "redis shared by two receivers ($url)" tests/blackbox/abuse_check.py redis-shared \
      127.0.0.1:28421 127.0.0.1:28422 "${logs[@]}"
    stop_redis
    run_py "redis killed" tests/blackbox/abuse_check.py redis-down \
      127.0.0.1:28421 127.0.0.1:28422 "$state" "${logs[@]}"
    if start_redis; then
      run_py "redis restarted on the same port" tests/blackbox/abuse_check.py redis-recover \
        127.0.0.1:28421 127.0.0.1:28422 "$state" "${logs[@]}"
    fi
  fi
fi

# No secret in any receiver's output.
if grep -E 'whsec_blackbox|blackbox-(github|slack|shopify|meta|x)-(one|two)|blackbox-meta-verify-token|MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw|YmxhY2tib3gtc3RhbmRhcmQtdHdv|blackbox-named-[a-z]+-(one|two)|YmxhY2tib3gtbmFtZWQt|626c61636b626f782d6e616d65642d' \
  "$out"/*.log "$out"/*.out; then
  echo "FAIL a secret appeared in a receiver's log"; fail "secret in a log"
else
  echo "ok   no secret in any receiver's log"
fi

if [ "${#failures[@]}" != 0 ]; then
  echo "blackbox: FAILED: $(printf '%s; ' "${failures[@]}")"
  exit 1
fi
echo "blackbox: all checks passed"
