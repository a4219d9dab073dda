#!/usr/bin/env bash
# The inspector page in a real browser: builds and starts examples/inspect.rs
# (two verified routes, the inspector on its own loopback port), then
# tests/browser/inspect_check.py drives Debian's headless Chromium over the
# DevTools protocol: it opens /inspect, sends signed, tampered, stale,
# replayed and hostile deliveries, and checks what the page shows, live.
# The screenshot goes to target/inspect-browser/inspect.png (or
# $CARGO_TARGET_DIR/inspect-browser/). Installs chromium with apt-get when
# it is missing and this runs as root. Exits non-zero on any failed check.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "error: this check needs Debian's chromium on PATH (apt-get install chromium)" >&2
    exit 1
  fi
fi

target=${CARGO_TARGET_DIR:-target}
out=${INSPECT_OUT:-$target/inspect-browser}
mkdir -p "$out"
cargo build --quiet --example inspect --features inspect

secret="whsec_browser_check_$RANDOM$RANDOM"
log="$out/example.log"
# Port 0: the example prints the ports it got.
WEBHOOK_ADDR=127.0.0.1:0 WEBHOOK_INSPECT_ADDR=127.0.0.1:0 WEBHOOK_INSPECT_KEEP=50 \
  STRIPE_WEBHOOK_SECRET="$secret" "$target/debug/examples/inspect" >"$log" 2>&1 &
example=$!
trap 'kill "$example" 2>/dev/null || true; wait "$example" 2>/dev/null || true' EXIT

webhooks="" inspect=""
for _ in $(seq 200); do
  webhooks=$(sed -n 's/^webhooks on //p' "$log")
  inspect=$(sed -n 's/^inspector on //p' "$log")
  [ -n "$webhooks" ] && [ -n "$inspect" ] && break
  kill -0 "$example" 2>/dev/null || { cat "$log" >&2; echo "the example exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$inspect" ] || { cat "$log" >&2; echo "the example did not start" >&2; exit 1; }
echo "webhooks: $webhooks  inspector: $inspect"

python3 tests/browser/inspect_check.py --webhooks "$webhooks" --inspect "$inspect" \
  --secret "$secret" --out "$out"
